// Status page: /api/status every 2 s.
"use strict";
(function () {
  const error = document.getElementById("error");
  function yes(v, good, bad) {
    return el("span", { className: v ? "good" : "bad", textContent: v ? good : bad });
  }
  function fill(id, rows) {
    document.getElementById(id).replaceChildren(...rows.flatMap(([k, v]) =>
      [el("dt", { textContent: k }), el("dd", {}, v == null || v === "" ? "–" : v)]));
  }
  function duration(s) {
    s = Math.round(s || 0);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + " d " : "") + (d || h ? h + " h " : "") + m + " min " + (s % 60) + " s";
  }
  // The RTSP addresses as a recorder reaches them: the host this page came from when the
  // stream listens on every interface, else its own address. Never with the password.
  function streamRows(st) {
    if (!st.enabled) return [["Stream", "off ([stream] enabled = false)"]];
    if (!st.running) return [["Stream", yes(false, "", "not running")], ["Why", st.error]];
    let host = st.bind === "0.0.0.0" || st.bind === "::" ? location.hostname : st.bind;
    if (host.includes(":") && !host.startsWith("[")) host = "[" + host + "]";
    const urls = st.mounts.map((m) => "rtsp://" + host + ":" + st.port + m);
    return [["Stream", yes(true, "running", "")],
      ["URL", el("span", {}, ...urls.flatMap((u, i) => (i ? [el("br"), u] : [u])))],
      ["Login", st.auth === "none" ? "none: anyone on the network may watch" : st.auth + ", user " + st.user],
      ["Video", "H.264 " + st.size + " at " + st.fps + " fps, " + st.encoder],
      ["Clients", st.clients + " now, " + st.clients_served + " since start"],
      ["Encoding", st.encoding.length ? st.encoding.join(", ") : "nothing (no client)"]];
  }
  async function load() {
    let s;
    try {
      s = await getJSON("/api/status");
      error.hidden = true;
    } catch (err) {
      error.textContent = "Status unavailable: " + err.message;
      error.hidden = false;
      return;
    }
    fill("camera", [["Source", s.source], ["Camera", yes(s.camera_up, "up", "down")],
      ["Last error", s.camera_error], ["Reopened", String(s.camera_reopens)],
      ["Frames captured", String(s.frames_captured)], ["Frames dropped", String(s.frames_dropped)]]);
    fill("detection", [["State", s.state], ["fps", s.fps + " (cap " + s.fps_cap + ")"],
      ["Detector", s.detector_model], ["Classifier", s.classifier_model],
      ["Accelerator", s.accelerator], ["Faces now", String(s.faces_in_frame)],
      ["Alarms", String(s.alarms)], ["Last alarm", localTime(s.last_alarm_utc)]]);
    fill("schedule", [["Schedule", yes(s.schedule_active, "active", "outside")],
      ["Next change", localTime(s.schedule_next_change_utc)], ["Time zone", s.timezone],
      ["IR mode", s.ir_mode ? "on — detection paused" : "off"], ["IR input", s.ir_source]]);
    const log = s.event_log || {};
    fill("device", [["Name", s.device], ["Version", s.version], ["Up", duration(s.uptime_s)],
      ["Web", (s.web.https ? "https" : "http") + " " + s.web.bind + ":" + s.web.port +
        ", " + s.web.viewers + " viewer(s)"],
      ["Event log", log.error ? log.error : log.events + " event(s), " + log.pending + " undelivered"],
      ["Config", s.config_error || "OK"]]);
    fill("stream", streamRows(s.stream || {}));
    const outputs = Object.entries(s.outputs || {});
    document.querySelector("#outputs tbody").replaceChildren(...(outputs.length ? outputs.map(([name, o]) =>
      el("tr", {}, el("td", { textContent: name }), el("td", { textContent: o.state }),
        el("td", { textContent: o.delivered }), el("td", { textContent: o.queued }),
        el("td", { textContent: o.failed_attempts }), el("td", { textContent: o.dropped }),
        el("td", { textContent: localTime(o.last_success_utc) }),
        el("td", { textContent: o.last_error ? o.last_error + " (" + localTime(o.last_error_utc) + ")" : "–" })))
      : [el("tr", {}, el("td", { colSpan: 8, textContent: "No alarm outputs configured." }))]));
  }
  load();
  setInterval(load, 2000);
})();
