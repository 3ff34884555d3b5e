// vigie's dashboard, its one script: keeps the rows of the checks'
// table current from the server's events (/ui/events). Everything it
// writes goes through textContent, never HTML. Without it the page still
// reads, as of its loading.
(function () {
  "use strict";
  var table = document.querySelector("table.overview");
  if (!table || !window.EventSource) return;
  var rows = Object.create(null);
  // When each check's state began (ms), as the events say.
  var since = Object.create(null);
  table.querySelectorAll("tr[data-check]").forEach(function (tr) {
    rows[tr.dataset.check] = tr;
  });
  function ago(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h";
    return Math.floor(s / 86400) + "d";
  }
  function set(el, key, value) {
    if (el[key] !== value) el[key] = value;
  }
  var source = new EventSource("/ui/events");
  source.addEventListener("checks", function (e) {
    var d = JSON.parse(e.data);
    d.checks.forEach(function (c) {
      var tr = rows[c.name];
      if (!tr) return; // a check added since: shown on reload
      // The first event has every check, mostly as the page shows
      // them: what is unchanged is left alone (a write, even of the
      // same text, makes the browser style the row again).
      var badge = tr.querySelector(".state");
      set(badge, "className", "state " + c.state);
      set(badge, "textContent", c.state);
      set(tr.querySelector(".msg"), "textContent", c.message);
      set(tr.querySelector(".since"), "title", c.since_title);
      since[c.name] = c.since;
    });
    Object.keys(since).forEach(function (n) {
      if (rows[n]) set(rows[n].querySelector(".since"), "textContent", ago(d.now - since[n]));
    });
    ["failing", "unknown", "ok"].forEach(function (st) {
      var el = document.getElementById("n-" + st);
      if (el) el.textContent = table.querySelectorAll("tbody .state." + st).length;
    });
    document.body.dataset.live = "on";
  });
  source.onerror = function () {
    document.body.dataset.live = "off";
  };
})();
