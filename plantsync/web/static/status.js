// plantsync status page: polls /status/fragment and replaces changed sections in place;
// sends the page's forms with fetch, the CSRF token in a header. Served by the agent itself.
"use strict";
(function () {
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const csrf = meta("csrf-token");
  const pollMs = parseInt(meta("poll-ms"), 10) || 2000;
  const message = () => document.getElementById("message");

  function say(text, level) {
    const box = message();
    box.textContent = text;
    box.className = level || "";
  }

  async function refresh() {
    let answer;
    try {
      answer = await fetch("/status/fragment", { credentials: "same-origin", cache: "no-store" });
    } catch (error) {
      document.body.classList.add("agent-unreachable");
      say("The agent does not answer.", "down");
      return;
    }
    document.body.classList.remove("agent-unreachable");
    if (!answer.ok) {
      return;
    }
    const data = await answer.json();
    for (const [name, content] of Object.entries(data.sections)) {
      const section = document.getElementById(name);
      if (!section || section.dataset.html === content) {
        continue;
      }
      if (section.contains(document.activeElement) && document.activeElement !== document.body) {
        continue; // someone is typing a reason: do not pull the form from under them
      }
      section.innerHTML = content;
      section.dataset.html = content;
    }
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
    if (!(form instanceof HTMLFormElement)) {
      return;
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
      await refresh();
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });

  for (const section of document.querySelectorAll("section[data-section]")) {
    section.dataset.html = section.innerHTML;
  }
  window.setInterval(refresh, pollMs);
})();
