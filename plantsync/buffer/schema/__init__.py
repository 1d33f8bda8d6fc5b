"""The store's schema: its versions and the statements that reach each one."""
