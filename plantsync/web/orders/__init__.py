"""The schedule at a plant's scale and one order's life: views, API routes, page fragments.

timeline.py   the order timeline's view (what the API answers, the page and CLI show)
paging.py     a page of the schedule, filtered on the server; the API's /api/v1/orders
routes.py     GET /api/v1/orders, /api/v1/orders/{id}/timeline, the page's /status/orders/{id}
render.py     their HTML
"""
