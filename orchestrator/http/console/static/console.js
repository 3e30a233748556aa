// The console's only script: live node counters, the live task page, local times, copy
// buttons. No inline script is allowed (Content-Security-Policy), so everything is wired
// up here.
"use strict";

const POLL_MS = 1000;

function toast(text) {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = text;
  el.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("show"), 1600);
}

function setText(el, value) {
  const text = String(value);
  if (el.textContent !== text) {
    el.textContent = text;
    el.classList.remove("bump");
    void el.getBoundingClientRect(); // restart the animation
    el.classList.add("bump");
  }
}

function startCounters() {
  const totals = document.getElementById("totals");
  if (!totals) return;
  const url = totals.dataset.countsUrl;
  const live = document.getElementById("live");
  let busy = false;
  async function poll() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const r = await fetch(url, { headers: { accept: "application/json" }, credentials: "same-origin" });
      if (r.redirected) { window.location.reload(); return; } // the session ended
      if (!r.ok) throw new Error(String(r.status));
      const body = await r.json();
      document.querySelectorAll("[data-count-for]").forEach((el) => {
        const n = body.nodes[el.dataset.countFor];
        if (n !== undefined) setText(el, n);
      });
      document.querySelectorAll("[data-total]").forEach((el) => {
        const n = body.counts[el.dataset.total];
        if (n !== undefined) setText(el, n);
      });
      if (live) { live.className = "live on"; live.textContent = "live"; }
    } catch (err) {
      if (live) { live.className = "live off"; live.textContent = "offline"; }
    } finally {
      busy = false;
    }
  }
  setInterval(poll, POLL_MS);
}

const pad = (n) => String(n).padStart(2, "0");

function localText(date, timeOnly) {
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  if (timeOnly) return `${time}.${String(date.getMilliseconds()).padStart(3, "0")}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

// Times come as ISO 8601 in UTC; people read them in their own time zone.
function localizeTimes(root) {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  root.querySelectorAll("time[datetime]").forEach((el) => {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) return;
    el.textContent = localText(date, el.hasAttribute("data-time-only"));
    el.title = `${el.getAttribute("datetime")} (UTC); shown in ${zone}`;
  });
}

function localInputValue(date) {
  return `${localText(date, false).replace(" ", "T").slice(0, 16)}`;
}

// The task filters: the visible inputs are local time, the submitted ones UTC.
function startTimeFilters() {
  document.querySelectorAll("input[data-utc-for]").forEach((input) => {
    const hidden = document.getElementById(input.dataset.utcFor);
    if (!hidden) return;
    const date = new Date(hidden.value);
    if (hidden.value && !Number.isNaN(date.getTime())) input.value = localInputValue(date);
    input.form.addEventListener("submit", () => {
      hidden.value = input.value ? new Date(input.value).toISOString() : "";
    });
  });
}

// The task page redraws itself when the task changes (node, state, new events).
function startLiveTask() {
  const region = document.getElementById("task-live");
  if (!region) return;
  const url = region.dataset.liveUrl;
  let stamp = null;
  let busy = false;
  async function poll() {
    if (busy || document.hidden) return;
    busy = true;
    const live = document.getElementById("live");
    try {
      const r = await fetch(url, { headers: { accept: "application/json" }, credentials: "same-origin" });
      if (r.redirected) { window.location.reload(); return; }
      if (!r.ok) throw new Error(String(r.status));
      const body = await r.json();
      if (stamp !== null && body.stamp !== stamp) {
        const typing = region.contains(document.activeElement) && document.activeElement.closest("form");
        if (!typing) {
          const page = await fetch(window.location.pathname, { credentials: "same-origin" });
          const doc = new DOMParser().parseFromString(await page.text(), "text/html");
          const fresh = doc.getElementById("task-live");
          if (fresh) {
            region.innerHTML = fresh.innerHTML;
            localizeTimes(region);
            startCopyButtons(region);
          }
        } else {
          return; // redraw on a later poll, once the operator has left the form
        }
      }
      stamp = body.stamp;
      const badge = document.getElementById("live");
      if (badge) { badge.className = "live on"; badge.textContent = "live"; }
    } catch (err) {
      if (live) { live.className = "live off"; live.textContent = "offline"; }
    } finally {
      busy = false;
    }
  }
  poll();
  setInterval(poll, POLL_MS);
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return true; } catch (err) { /* fall back */ }
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
  area.remove();
  return ok;
}

function startCopyButtons(root) {
  (root || document).querySelectorAll("button[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const ok = await copyText(source.textContent.trim());
      button.textContent = ok ? "Copied" : "Copy failed";
      toast(ok ? "Copied to the clipboard" : "Could not copy: select the URL and copy it");
      setTimeout(() => { button.textContent = "Copy"; }, 1600);
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  // After a refused form, the keyboard starts at the first field in error.
  const invalid = document.querySelector('[aria-invalid="true"]');
  if (invalid) invalid.focus();
  localizeTimes(document);
  startTimeFilters();
  startCounters();
  startLiveTask();
  startCopyButtons();
});
