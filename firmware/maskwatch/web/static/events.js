// Events page: the event log from /api/events, filtered by time and class, newest first.
"use strict";
(function () {
  const form = document.getElementById("filter");
  const body = document.querySelector("#events tbody");
  const summary = document.getElementById("summary");
  const error = document.getElementById("error");
  const older = document.getElementById("older");
  const newer = document.getElementById("newer");
  const PAGE = 25;
  let offset = 0;

  function query() {
    const params = new URLSearchParams();
    const data = new FormData(form);
    for (const name of ["since", "until"]) {
      const value = data.get(name);
      if (value) params.set(name, new Date(value).toISOString());  // the browser's local time
    }
    if (data.get("label")) params.set("label", data.get("label"));
    params.set("limit", PAGE);
    params.set("offset", offset);
    return params;
  }
  function delivery(d) {
    if (!d || !d.length) return "–";
    return d.map((x) => x.destination + ": " + x.state).join(", ");
  }
  async function load() {
    error.hidden = true;
    let data;
    try {
      data = await getJSON("/api/events?" + query());
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      return;
    }
    body.replaceChildren(...data.events.map((e) => {
      const shot = e.thumbnail_url
        ? el("a", { href: e.snapshot_url, target: "_blank", className: "snapshot-link" },
            el("img", { src: e.thumbnail_url, className: "thumb", alt: "snapshot", loading: "lazy" }))
        : "no snapshot";
      return el("tr", { id: "event-" + e.event_id },
        el("td", {}, shot),
        el("td", { textContent: localTime(e.utc) }),
        el("td", {}, el("span", { className: "label " + e.label, textContent: LABEL_NAMES[e.label] || e.label })),
        el("td", { textContent: Math.round(e.confidence * 100) + " %" }),
        el("td", { textContent: "#" + e.track_id, className: "hide-narrow" }),
        el("td", { textContent: delivery(e.deliveries), className: "hide-narrow" }));
    }));
    const total = data.total == null ? "" : " of " + data.total;
    summary.textContent = data.events.length
      ? "Events " + (offset + 1) + "–" + (offset + data.events.length) + total
      : "No events" + (offset ? " on this page" : " for this filter") + ".";
    newer.disabled = offset === 0;
    older.disabled = data.total == null ? data.events.length < PAGE : offset + PAGE >= data.total;
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); offset = 0; load(); });
  older.addEventListener("click", () => { offset += PAGE; load(); });
  newer.addEventListener("click", () => { offset = Math.max(0, offset - PAGE); load(); });
  load();
  setInterval(() => { if (offset === 0 && !document.hidden) load(); }, 10000);
})();
