// Settings page (F28): every form sends its section(s) to /api/settings/<section>; the device
// validates like the config file and answers each problem by key, shown next to its field.
"use strict";
const CSRF = document.querySelector('input[name="csrf_token"]').value;
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
let settings = {};  // the file's own settings (what a save starts from)
let effective = {};  // every setting in force, defaults included (what the forms show)

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  return { ok: response.ok, data };
}

function get(path, fallback, from = settings) {
  let node = from;
  for (const part of path.split(".")) {
    if (node == null || !(part in node)) return fallback;
    node = node[part];
  }
  return node;
}

function showProblems(form, problems) {
  form.querySelectorAll(".field-error").forEach((span) => { span.textContent = ""; });
  const unplaced = [];
  for (const [key, message] of Object.entries(problems || {})) {
    const span = [...form.querySelectorAll(".field-error")]
      .find((s) => key === s.dataset.for || key.startsWith(s.dataset.for + "."));
    if (span) span.textContent = (span.textContent ? span.textContent + "; " : "") + message;
    else unplaced.push(key + ": " + message);
  }
  return unplaced;
}

async function save(form, sections) {
  const status = form.querySelector(".saved");
  status.textContent = "";
  for (const [section, values] of Object.entries(sections)) {
    const { ok, data } = await post("/api/settings/" + section, values);
    const unplaced = showProblems(form, data.problems);
    if (!ok) {
      status.textContent = "";
      const error = document.getElementById("error");
      error.textContent = unplaced.length ? unplaced.join("; ") : (data.problems ? "" : data.error);
      error.hidden = !error.textContent;
      return false;
    }
  }
  document.getElementById("error").hidden = true;
  status.textContent = "Saved and applied.";
  return true;
}

// ---- simple forms: inputs and selects named "<section>.<key>"; a blank password is left
// out, so the device keeps the one it has (secrets are write-only)
function numberOr(input) {
  return input.type === "number" && input.value !== "" ? Number(input.value) : input.value;
}
const FIELDS = "input[name], select[name]";
for (const form of document.querySelectorAll("form[data-section]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const sections = {};
    for (const input of form.querySelectorAll(FIELDS)) {
      if (input.type === "password" && input.value === "") continue;
      const [section, key] = input.name.split(".");
      (sections[section] = sections[section] || {})[key] =
        input.type === "checkbox" ? input.checked : numberOr(input);
    }
    if (!(await save(form, sections))) return;
    for (const secret of form.querySelectorAll('input[type="password"]')) {
      if (secret.value) secret.placeholder = "set (blank = keep)";
      secret.value = "";
    }
  });
}
function fillSimpleForms() {
  for (const input of document.querySelectorAll(`form[data-section] :is(${FIELDS})`)) {
    if (input.type === "checkbox") input.checked = Boolean(get(input.name, false, effective));
    else if (input.type === "password") {
      input.value = "";
      input.placeholder = get(input.name + "_set", false, effective) ? "set (blank = keep)" : "";
    } else input.value = get(input.name, "", effective);
  }
}

// ---- schedule: a week of hours
const grid = document.getElementById("schedule-grid");
function buildGrid() {
  const head = el("tr", {}, el("th"));
  for (let h = 0; h < 24; h++) head.append(el("th", { textContent: String(h) }));
  grid.append(head);
  for (const day of DAYS) {
    const row = el("tr", {}, el("th", { textContent: day }));
    for (let h = 0; h < 24; h++) row.append(el("td", { title: `${day} ${h}:00` }));
    grid.append(row);
  }
  let painting = null;
  grid.addEventListener("pointerdown", (e) => {
    if (e.target.tagName !== "TD") return;
    painting = !e.target.classList.contains("on");
    e.target.classList.toggle("on", painting);
  });
  grid.addEventListener("pointerover", (e) => {
    if (painting !== null && e.target.tagName === "TD") e.target.classList.toggle("on", painting);
  });
  document.addEventListener("pointerup", () => { painting = null; });
}
function cells() {
  return DAYS.map((_, d) => [...grid.rows[d + 1].cells].slice(1));
}
function minutes(text) {
  const [h, m] = text.split(":").map(Number);
  return h * 60 + m;
}
function fillGrid() {
  const ranges = get("schedule.ranges", [], effective);
  cells().forEach((row, d) => row.forEach((cell, h) => {
    const at = h * 60;
    const on = ranges.length === 0 || ranges.some((r) => {
      const days = r.days || DAYS, start = minutes(r.start), end = minutes(r.end);
      if (start < end) return days.includes(DAYS[d]) && start <= at && at < end;
      const yesterday = DAYS[(d + 6) % 7];
      return (days.includes(DAYS[d]) && at >= start) || (days.includes(yesterday) && at < end);
    });
    cell.classList.toggle("on", on);
  }));
}
function gridRanges() {
  const rows = cells().map((row) => row.map((c) => c.classList.contains("on")));
  if (rows.every((row) => row.every(Boolean))) return [];
  const ranges = [];
  const hh = (h) => String(h).padStart(2, "0") + ":00";
  rows.forEach((row, d) => {
    for (let h = 0; h < 24;) {
      if (!row[h]) { h++; continue; }
      let end = h;
      while (end < 24 && row[end]) end++;
      ranges.push({ days: [DAYS[d]], start: hh(h), end: end === 24 ? "24:00" : hh(end) });
      h = end;
    }
  });
  return ranges;
}
document.getElementById("schedule-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  await save(event.target, { schedule: { ranges: gridRanges() } });
});

// ---- privacy zones drawn on a still of the camera
const still = document.getElementById("still");
const canvas = document.getElementById("zones");
let zones = [];
let drawing = [];
function drawZones() {
  canvas.width = still.clientWidth;
  canvas.height = still.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const path = (points, fill) => {
    ctx.beginPath();
    points.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"](x * canvas.width, y * canvas.height));
    if (fill) { ctx.closePath(); ctx.fillStyle = "rgba(0,0,0,0.75)"; ctx.fill(); }
    ctx.strokeStyle = "#ffd400"; ctx.lineWidth = 2; ctx.stroke();
  };
  zones.forEach((z) => path(z, true));
  if (drawing.length) path(drawing, false);
  const list = document.getElementById("zone-list");
  list.replaceChildren(...zones.map((z, i) => el("li", {},
    `Zone ${i + 1} (${z.length} corners) `,
    el("button", { type: "button", textContent: "Delete", onclick: () => { zones.splice(i, 1); drawZones(); } }))));
}
canvas.addEventListener("click", (e) => {
  const box = canvas.getBoundingClientRect();
  drawing.push([(e.clientX - box.left) / box.width, (e.clientY - box.top) / box.height]
    .map((v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000));
  drawZones();
});
document.getElementById("zone-undo").addEventListener("click", () => { drawing.pop(); drawZones(); });
document.getElementById("zone-close").addEventListener("click", () => {
  if (drawing.length >= 3) { zones.push(drawing); drawing = []; drawZones(); }
});
document.getElementById("privacy-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  await save(event.target, { privacy: { zones: zones.map((points) => ({ points, normalized: true })) } });
});
function fillZones() {
  // Zones in pixels are in pixels of the (rotated) camera frame.
  const turned = [90, 270].includes(get("source.rotation", 0, effective));
  const w = get("source.width", 1, effective), h = get("source.height", 1, effective);
  const size = turned ? [h, w] : [w, h];
  zones = get("privacy.zones", [], effective).map((z) =>
    z.normalized ? z.points : z.points.map(([x, y]) => [x / size[0], y / size[1]]));
  drawZones();
}
still.addEventListener("load", fillZones);
window.addEventListener("resize", drawZones);

// ---- outputs: destinations of every kind, test alarms
const KINDS = {
  tcp: { title: "TCP", fields: [["host", "text", "192.168.1.20"], ["port", "number", "1818"],
                                ["format", "text", "json or template"]], fresh: { port: 1818, format: "json" } },
  webhook: { title: "Webhook", fields: [["url", "text", "https://vms.example/hook"],
                                        ["secret", "password", "HMAC key"], ["timeout_s", "number", "5"]], fresh: {} },
  mqtt: { title: "MQTT", fields: [["host", "text", "broker.lan"], ["port", "number", "1883"],
                                  ["username", "text", ""], ["password", "password", ""],
                                  ["topic_prefix", "text", "maskwatch"]], fresh: {} },
  serial: { title: "Serial", fields: [["port", "text", "/dev/ttyUSB0"], ["baudrate", "number", "9600"]], fresh: {} },
  gpio: { title: "GPIO relay", fields: [["pin", "number", "BCM pin"], ["pulse_s", "number", "1"]], fresh: {} },
};
const tables = {};
function destinationRow(kind, dest, index) {
  const fields = KINDS[kind].fields;
  const cells = fields.map(([key, type, hint]) => {
    const secretSet = type === "password" && dest[key + "_set"];
    const node = el("input", { type, value: type === "password" ? "" : (dest[key] ?? ""),
                               placeholder: secretSet ? "set (blank = keep)" : hint });
    node.dataset.key = key;
    const error = el("span", { className: "field-error" });
    error.dataset.for = `outputs.${kind}.${index}.${key}`;
    return el("td", {}, node, error);
  });
  const row = el("tr", {}, ...cells);
  row.append(el("td", {}, el("button", { type: "button", textContent: "Remove", onclick: () => row.remove() })));
  row.extra = dest;
  return row;
}
function buildDestinations() {
  const host = document.getElementById("destinations");
  for (const [kind, spec] of Object.entries(KINDS)) {
    const body = el("tbody");
    const table = el("table", { id: kind + "-table" },
      el("thead", {}, el("tr", {}, ...spec.fields.map(([key]) => el("th", { textContent: key })), el("th"))), body);
    const add = el("button", { type: "button", id: kind + "-add", textContent: `Add ${spec.title} destination`,
                               onclick: () => body.append(destinationRow(kind, spec.fresh, body.rows.length)) });
    host.append(el("h3", { textContent: spec.title }), el("div", { className: "table-wrap" }, table), add);
    tables[kind] = body;
  }
}
function fillDestinations() {
  for (const [kind, body] of Object.entries(tables)) {
    body.replaceChildren(...get("outputs." + kind, []).map((d, i) => destinationRow(kind, d, i)));
  }
}
document.getElementById("outputs-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const outputs = Object.assign({}, get("outputs", {}));
  for (const [kind, body] of Object.entries(tables)) {
    outputs[kind] = [...body.rows].map((row) => {
      const dest = Object.assign({}, row.extra);
      row.querySelectorAll("input").forEach((i) => {
        const key = i.dataset.key;
        if (i.type === "password" || (i.type === "number" && i.value === "")) {
          delete dest[key + "_set"];
          if (i.value === "") { delete dest[key]; return; }  // blank: keep the secret / the default
        }
        dest[key] = numberOr(i);
      });
      return dest;
    });
  }
  if (await save(event.target, { outputs })) setTimeout(loadTests, 1500);
});
async function sendTest(destination, line) {
  line.textContent = "sending…";
  const { data } = await post("/api/settings/test-alarm", destination ? { destination } : {});
  if (data.error) { line.textContent = data.error; return; }
  for (const [name, r] of Object.entries(data.results || {})) {
    const target = destination ? line : document.querySelector(`[data-test="${CSS.escape(name)}"] .result`);
    if (target) target.textContent = r.result + (r.error ? ": " + r.error : "");
  }
  if (!destination) line.textContent = "done";
}
async function loadTests() {
  const status = await getJSON("/api/status");
  const list = document.getElementById("test-list");
  list.replaceChildren(...Object.keys(status.outputs || {}).map((name) => {
    const result = el("span", { className: "result" });
    const item = el("li", {}, name + " ",
      el("button", { type: "button", textContent: "Send test alarm", onclick: () => sendTest(name, result) }),
      " ", result);
    item.dataset.test = name;
    return item;
  }));
  document.getElementById("schedule-now").textContent =
    status.schedule_active ? "inside the schedule (detecting)" : "outside the schedule (paused)";
}
document.getElementById("test-all").addEventListener("click",
  () => sendTest(null, document.getElementById("test-all-result")));

// ---- password, backup
document.getElementById("password-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const { ok, data } = await post("/api/settings/password",
    { current: form.current.value, new: form.new.value });
  showProblems(form, data.problems);
  form.querySelector(".saved").textContent = ok ? "Password changed; other sessions ended." : "";
  if (ok) form.reset();
});
document.getElementById("backup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const file = form.file.files[0];
  if (!file) return;
  const response = await fetch("/api/settings/config.toml", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/toml", "X-CSRF-Token": CSRF }, body: await file.text(),
  });
  const data = await response.json().catch(() => ({}));
  showProblems(form, response.ok ? {} : { restore: data.error });
  form.querySelector(".saved").textContent = response.ok ? "Restored and applied." : "";
  if (response.ok) load();
});

async function load() {
  try {
    const data = await getJSON("/api/settings");
    settings = data.settings;
    effective = data.effective;
    fillSimpleForms();
    fillGrid();
    fillDestinations();
    fillZones();
    await loadTests();
  } catch (err) {
    const error = document.getElementById("error");
    error.textContent = "Settings unavailable: " + err.message;
    error.hidden = false;
  }
}
buildGrid();
buildDestinations();
still.src = "/live.jpg";
load();
