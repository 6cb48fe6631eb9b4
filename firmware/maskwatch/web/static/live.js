// Live page: the MJPEG stream in an <img>, the state polled once a second. The image is
// reconnected by itself when the stream stops (service or camera restart, F13).
"use strict";
(function () {
  const img = document.getElementById("live");
  const video = document.getElementById("video");
  const message = document.getElementById("message");
  const stateEl = document.getElementById("state");
  const fpsEl = document.getElementById("fps");
  const alarmEl = document.getElementById("alarm");
  const facesEl = document.getElementById("faces");
  let streamId = "";
  let connectedAt = 0;
  let failures = 0;

  function newId() {
    return Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
  }
  function connect() {
    streamId = newId();
    connectedAt = Date.now();
    img.src = "/stream.mjpg?c=" + streamId;
  }
  function disconnect() {
    if (img.getAttribute("src")) img.removeAttribute("src");
    streamId = "";
  }
  function show(text, cls) {
    message.textContent = text;
    message.className = "message " + (cls || "");
    message.hidden = false;
  }
  img.addEventListener("error", () => {
    // The stream ended (restart, too many viewers): try again after a moment.
    setTimeout(() => { if (streamId) connect(); }, 2000);
  });

  async function poll() {
    let s;
    try {
      s = await getJSON("/api/live" + (streamId ? "?c=" + streamId : ""));
      failures = 0;
    } catch (err) {
      failures += 1;
      if (failures >= 2) show("Connection to the device lost — reconnecting…");
      return;
    }
    fpsEl.textContent = (s.fps || 0).toFixed(1) + " fps";
    const alarm = s.alarm;
    alarmEl.textContent = alarm ? "ALARM: " + (LABEL_NAMES[s.alarm_label] || s.alarm_label) : "no alarm";
    alarmEl.className = "pill " + (alarm ? "alarm" : "idle");
    facesEl.replaceChildren(...(s.faces || []).map((f) =>
      el("li", { className: f.label, textContent: (LABEL_NAMES[f.label] || f.label) + " " +
        Math.round(f.confidence * 100) + "%" + (f.track_id != null ? " #" + f.track_id : "") })));
    const state = s.state === "unknown" ? s.service_state : s.state;
    if (state === "outside_schedule") {
      stateEl.textContent = "outside schedule";
      let text = "Outside the operation schedule — no detection, no live image.";
      if (s.schedule_next_change_utc) text += " Resumes " + localTime(s.schedule_next_change_utc) + ".";
      show(text);
      video.hidden = true;
      disconnect();
      return;
    }
    video.hidden = false;
    if (!s.camera_up) {
      stateEl.textContent = "camera down";
      show("Camera down" + (s.camera_error ? ": " + s.camera_error : "") + " — waiting for it to come back…");
    } else if (state === "ir_mode" || s.ir_mode) {
      stateEl.textContent = "IR mode";
      show("IR mode — detection paused", "ir");
    } else {
      stateEl.textContent = state === "active" ? "detecting" : state;
      message.hidden = true;
    }
    // Reconnect when our stream is gone or stale while frames are being made.
    const age = s.stream_age_s;
    const settling = Date.now() - connectedAt < 6000;
    if (!streamId || (!settling && (age === null || age > 5))) connect();
  }
  connect();
  poll();
  setInterval(poll, 1000);
})();
