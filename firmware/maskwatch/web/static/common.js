// Shared helpers: JSON fetch that sends the user to the login page when the session ended.
"use strict";
async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    throw new Error("login required");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || ("HTTP " + response.status));
  return data;
}
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}
function localTime(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString();
}
const LABEL_NAMES = { no_mask: "no mask", mask: "mask", incorrect: "incorrect", unknown: "unknown" };
