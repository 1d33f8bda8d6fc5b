// plantsync status page: polls /status/fragment (with the page's filters) and replaces the
// sections that changed; the agent answers 304, or only the changed sections, by the ETag it
// gave last. Sends the page's POST forms with fetch, the CSRF token in a header; GET forms
// (the schedule's filters) are plain links. Served by the agent itself.
"use strict";
(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const csrf = meta("csrf-token");
  const pollMs = parseInt(meta("poll-ms"), 10) || 2000;
  const message = () => document.getElementById("message");
  let etag = meta("sections-etag"); // the page's own sections: the first poll is conditional
  let hideTimer = 0;

  // The notice floats where the reader is (fixed in the corner), not at the top of a long page.
  function say(text, level) {
    const box = message();
    box.textContent = text;
    box.className = `${level || ""} shown`;
    window.clearTimeout(hideTimer);
    hideTimer = window.setTimeout(() => box.classList.remove("shown"), 6000);
  }

  function stamp() {
    const updated = document.getElementById("updated");
    if (updated) {
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    }
  }

  async function refresh() {
    let answer;
    try {
      answer = await fetch(`/status/fragment${window.location.search}`, {
        credentials: "same-origin",
        cache: "no-store",
        headers: etag ? { "If-None-Match": etag } : {},
      });
    } catch (error) {
      document.body.classList.add("agent-unreachable");
      say("The agent does not answer.", "down");
      return;
    }
    document.body.classList.remove("agent-unreachable");
    if (answer.status === 304) {
      stamp();
      return;
    }
    if (!answer.ok) {
      return;
    }
    const data = await answer.json();
    const kept = [];
    for (const [name, content] of Object.entries(data.sections)) {
      const section = document.getElementById(name);
      if (!section || section.dataset.html === content) {
        continue;
      }
      if (section.contains(document.activeElement) && document.activeElement !== document.body) {
        kept.push(name); // someone is typing (a reason, a search): do not pull the form away
        continue;
      }
      section.innerHTML = content;
      section.dataset.html = content;
    }
    // A section kept as it was must come again: leave its tag out, so the next poll sends it.
    const tags = (answer.headers.get("ETag") || "").replace(/"/g, "").split(".");
    const wanted = tags.filter((tag) => !kept.includes(tag.split(":")[0]));
    etag = wanted.length ? `"${wanted.join(".")}"` : "";
    stamp();
  }

  async function send(form) {
    const body = {};
    for (const [key, value] of new FormData(form).entries()) {
      body[key] = value;
    }
    const answer = await fetch(form.getAttribute("action"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    let detail = "";
    try {
      const data = await answer.json();
      detail = typeof data.detail === "string" ? data.detail : "";
    } catch (error) {
      detail = "";
    }
    return { ok: answer.ok, status: answer.status, detail: detail };
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") {
      return; // a GET form (the filters) loads its URL as any link does
    }
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const result = await send(form);
      if (form.id === "login" || form.id === "logout") {
        if (result.ok) {
          window.location.reload();
        } else {
          say(result.detail || `refused (${result.status})`, "down");
        }
        return;
      }
      if (result.ok) {
        say("Done.", "ok");
      } else {
        say(result.detail || `refused (${result.status})`, "down");
      }
      if (document.activeElement) {
        document.activeElement.blur();
      }
      etag = "";
      await refresh();
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });

  for (const section of document.querySelectorAll("section[data-section]")) {
    section.dataset.html = section.innerHTML;
  }
  stamp();
  window.setInterval(refresh, pollMs);
})();
