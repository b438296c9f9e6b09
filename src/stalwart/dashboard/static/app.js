// stalwart dashboard: live refresh of server-rendered pages over server-sent events.
"use strict";
(function () {
  const content = document.getElementById("content");
  const statusDot = document.getElementById("live-status");

  function refresh() {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    return fetch(url, { headers: { accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        if (content.dataset.refresh) { content.innerHTML = html; } else { replaceList(html); }
        content.dispatchEvent(new CustomEvent("refreshed"));
      })
      .catch(function () { /* keep the last good view; the next tick retries */ });
  }

  function replaceList(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const fresh = doc.getElementById("message-list");
    const list = document.getElementById("message-list");
    if (fresh && list) { list.replaceWith(fresh); }
  }

  // Pages with data-refresh reload their content periodically (availability
  // changes without any message, e.g. a service going late then down).
  if (content && content.dataset.refresh) {
    const every = parseInt(content.dataset.refresh, 10) || 5000;
    window.setInterval(function () { if (!document.hidden) { refresh(); } }, every);
  }

  // Purging is permanent: ask first.
  document.addEventListener("submit", function (ev) {
    const form = ev.target;
    const button = ev.submitter;
    if (form.dataset && form.dataset.confirmPurge && button && button.value === "purge") {
      if (!window.confirm(form.dataset.confirmPurge)) { ev.preventDefault(); }
    }
  });

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    node.textContent = text; // text only: never HTML from a message
    if (cls) { node.className = cls; }
    return node;
  }

  // Live feed: batches of new messages. The overview shows them in a ticker;
  // the message list refreshes its first page (throttled) when live is on.
  const ticker = document.getElementById("ticker");
  const list = document.querySelector("[data-live-list]");
  const pattern = ticker ? ticker.dataset.live : (list ? list.dataset.refreshLive : null);
  if (!pattern || !window.EventSource) { return; }
  let pending = 0;
  let timer = null;
  const source = new EventSource("/live?pattern=" + encodeURIComponent(pattern));
  source.addEventListener("open", function () { statusDot.className = "live-dot on"; });
  source.addEventListener("error", function () { statusDot.className = "live-dot off"; });
  source.addEventListener("dropped", function (ev) {
    const info = JSON.parse(ev.data);
    const where = document.getElementById("live-dropped");
    if (where) { where.textContent = info.dropped + " updates skipped (too fast to show)"; }
    if (document.querySelector("[data-live-list]")) { refresh(); } // reload from the store
  });
  source.addEventListener("messages", function (ev) {
    const batch = JSON.parse(ev.data);
    if (ticker) {
      batch.slice(-30).forEach(function (m) {
        const li = document.createElement("li");
        const a = el("a", m.topic);
        a.href = "/messages/" + encodeURIComponent(m.id);
        li.appendChild(el("span", m.created_at.slice(11, 19), "muted"));
        li.appendChild(a);
        li.appendChild(el("span", m.kind));
        li.appendChild(el("span", m.sender, "mono muted"));
        ticker.insertBefore(li, ticker.firstChild);
      });
      while (ticker.children.length > 60) { ticker.removeChild(ticker.lastChild); }
    }
    const toggle = document.getElementById("live-toggle");
    if (document.querySelector("[data-live-list]") && (!toggle || toggle.checked)) {
      pending += batch.length;
      const counter = document.getElementById("new-count");
      if (counter) { counter.textContent = pending + " new"; }
      if (!timer) {
        timer = window.setTimeout(function () { timer = null; pending = 0; refresh(); }, 1000);
      }
    }
  });
})();
