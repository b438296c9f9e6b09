// stalwart dashboard: live refresh of server-rendered pages over server-sent events.
"use strict";
(function () {
  const content = document.getElementById("content");
  const statusDot = document.getElementById("live-status");

  function busy() {
    // Never pull the page from under someone choosing or typing.
    const active = document.activeElement;
    if (active && content.contains(active) && /INPUT|SELECT|TEXTAREA|BUTTON/.test(active.tagName)) { return true; }
    return content.querySelector("input[type=checkbox]:checked") !== null;
  }

  function refresh() {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    return fetch(url, { headers: { accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        // Someone may have started choosing while it was on its way: keep their choice.
        if (busy()) { return; }
        if (content.dataset.refresh || content.dataset.live) { content.innerHTML = html; } else { replaceList(html); }
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

  // Live: one stream per page. The page says what it follows (data-live on
  // #content, or the message list's own pattern) and refreshes its content,
  // throttled, when matching messages arrive; the overview also fills its
  // ticker. The stream reconnects by itself; the dot says how it stands.
  const ticker = document.getElementById("ticker");
  const list = document.querySelector("[data-live-list]");
  const pattern = (content && content.dataset.live) || (list ? list.dataset.refreshLive : null);
  function showStatus(state, text) {
    if (!statusDot) { return; }
    statusDot.hidden = false;
    statusDot.className = "live-dot " + state;
    statusDot.textContent = text;
  }
  if (!pattern || !window.EventSource) {
    if (statusDot) { statusDot.hidden = true; } // nothing streams here: no dot at all
    return;
  }
  const every = content.dataset.liveEvery ? parseInt(content.dataset.liveEvery, 10) : 1000;
  let pending = 0;
  let timer = null;
  let wait = 1000;

  function soon() {
    if (!timer) {
      timer = window.setTimeout(function () {
        timer = null; pending = 0;
        if (!document.hidden && !busy()) { refresh(); }
      }, every);
    }
  }
  function onMessages(ev) {
    const batch = JSON.parse(ev.data);
    if (ticker) {
      batch.filter(function (m) { return !m.infra; }).slice(-30).forEach(function (m) {
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
    if (document.querySelector("[data-live-list]")) {
      if (toggle && !toggle.checked) { return; }
      pending += batch.length;
      const counter = document.getElementById("new-count");
      if (counter) { counter.textContent = pending + " new"; }
    }
    soon();
  }
  function connect() {
    showStatus("connecting", "connecting");
    let url = "/live?pattern=" + encodeURIComponent(pattern);
    if (content.dataset.liveInfra) { url += "&infra=true"; }
    const source = new EventSource(url);
    source.addEventListener("open", function () {
      wait = 1000;
      showStatus("on", "live");
      soon(); // catch up with what happened between rendering (or a break) and now
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (e.g. too many streams, logged out): retry later, slower each time.
        showStatus("off", "offline, retrying");
        window.setTimeout(connect, wait);
        wait = Math.min(wait * 2, 30000);
      } else {
        showStatus("off", "reconnecting");
      }
    });
    source.addEventListener("dropped", function (ev) {
      const info = JSON.parse(ev.data);
      const where = document.getElementById("live-dropped");
      if (where) { where.textContent = info.dropped + " updates skipped (too fast to show)"; }
      soon(); // reload from the store
    });
    source.addEventListener("messages", onMessages);
  }
  connect();
})();
