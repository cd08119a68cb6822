// billfn dashboard: keeps the bearer token in session storage, sends it as
// an Authorization header and shows the server-rendered panels. No chart
// library: the charts arrive as SVG.
(function () {
  "use strict";
  var KEY = "billfn.token";
  var $ = function (id) { return document.getElementById(id); };

  // A demo link may carry the token in the fragment (#token=...): the
  // fragment never reaches a server or its logs; it is moved to session
  // storage and removed from the address bar at once.
  var m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }

  var params = new URLSearchParams(location.search);
  ["from", "to", "currency"].forEach(function (k) {
    if (params.get(k)) {
      var el = $(k);
      if (k === "currency") {
        var o = document.createElement("option");
        o.value = o.textContent = params.get(k);
        el.appendChild(o);
      }
      el.value = params.get(k);
    }
  });

  function showLogin(message) {
    $("login").hidden = false;
    $("panels").innerHTML = "";
    $("loginerror").textContent = message || "";
    $("status").textContent = "";
  }

  function load() {
    var token = sessionStorage.getItem(KEY);
    if (!token) { showLogin(""); return; }
    $("login").hidden = true;
    var q = new URLSearchParams();
    ["from", "to", "currency"].forEach(function (k) { if ($(k).value) q.set(k, $(k).value); });
    $("status").textContent = "Loading…";
    document.body.setAttribute("data-state", "loading");
    fetch("dashboard/panels?" + q.toString(), {
      headers: { "Authorization": "Bearer " + token, "Accept": "text/html" },
      cache: "no-store"
    }).then(function (resp) {
      return resp.text().then(function (body) { return { resp: resp, body: body }; });
    }).then(function (r) {
      if (r.resp.status === 401) {
        sessionStorage.removeItem(KEY);
        showLogin("That token was refused (missing, invalid or expired).");
        document.body.setAttribute("data-state", "login");
        return;
      }
      if (!r.resp.ok) {
        var detail = r.resp.status + "";
        try { detail = JSON.parse(r.body).detail || detail; } catch (e) { /* not a problem document */ }
        $("status").textContent = "Could not load the figures: " + detail;
        document.body.setAttribute("data-state", "error");
        return;
      }
      // The fragment is HTML rendered and escaped by the server's templates.
      $("panels").innerHTML = r.body;
      $("status").textContent = "";
      var meta = $("panels").querySelector("[data-range-from]");
      if (meta) {
        $("from").value = meta.getAttribute("data-range-from");
        $("to").value = meta.getAttribute("data-range-to");
        var sel = $("currency"), cur = meta.getAttribute("data-currency");
        sel.innerHTML = "";
        meta.getAttribute("data-currencies").split(",").filter(Boolean).forEach(function (c) {
          var o = document.createElement("option");
          o.value = o.textContent = c;
          sel.appendChild(o);
        });
        sel.value = cur;
      }
      document.body.setAttribute("data-state", "ready");
    }).catch(function (e) {
      $("status").textContent = "Could not reach the function: " + e;
      document.body.setAttribute("data-state", "error");
    });
  }

  $("filters").addEventListener("submit", function (e) {
    e.preventDefault();
    var q = new URLSearchParams();
    ["from", "to", "currency"].forEach(function (k) { if ($(k).value) q.set(k, $(k).value); });
    history.replaceState(null, "", location.pathname + "?" + q.toString());
    load();
  });
  $("tokenform").addEventListener("submit", function (e) {
    e.preventDefault();
    var t = $("token").value.trim();
    if (t.toLowerCase().indexOf("bearer ") === 0) { t = t.slice(7).trim(); }
    if (!t) { return; }
    sessionStorage.setItem(KEY, t);
    $("token").value = "";
    load();
  });
  $("signout").addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    showLogin("");
  });
  load();
})();
