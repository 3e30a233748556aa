// The console's only script: live node counters and copy buttons. No inline script is
// allowed (Content-Security-Policy), so everything is wired up here.
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

function startCopyButtons() {
  document.querySelectorAll("button[data-copy]").forEach((button) => {
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
  startCounters();
  startCopyButtons();
});
