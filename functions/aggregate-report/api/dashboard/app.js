// billfn dashboard: keeps the bearer token in session storage, sends it as
// an Authorization header and shows the server-rendered panels. No chart
// library: the charts arrive as SVG.
(function () {
  "use strict";
  var KEY = "billfn.token";
  var $ = function (id) { return document.getElementById(id); };

  // A demo link may carry a token in the fragment (#token=...), which never
  // reaches a server or its logs. It is removed from the address bar at
  // once and only fills in the login form: the person signs in with a
  // press. Were a link to sign in by itself, a link with an attacker's
  // token would show the visitor the attacker's figures as their own
  // (login CSRF), and would silently replace the tab's own session.
  function fragmentToken() {
    var m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
    if (!m) { return null; }
    history.replaceState(null, "", location.pathname + location.search);
    try { return decodeURIComponent(m[1]).trim(); } catch (e) { return m[1].trim(); }
  }
  var linkToken = fragmentToken();

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

  // claims reads a token's payload to tell the person whom it signs in as.
  // Display only: the server verifies the token on every request.
  function claims(t) {
    var parts = t.split(".");
    if (parts.length !== 3) { return null; }
    try {
      var b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
      while (b64.length % 4) { b64 += "="; }
      var bin = atob(b64), bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
      var c = JSON.parse(new TextDecoder().decode(bytes));
      if (c && (typeof c.sub === "string" || typeof c.role === "string")) { return c; }
    } catch (e) { /* not a JWT we can read: the note says so */ }
    return null;
  }

  function expiry(exp) {
    var d = new Date(exp * 1000);
    if (typeof exp !== "number" || isNaN(d.getTime())) { return "no expiry given"; }
    var when = d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
    return (d.getTime() < Date.now() ? "expired " : "expires ") + when;
  }

  // describe fills the note under the form for the token in the field. The
  // claims come from whoever made the token: textContent, never markup.
  function describe(t, fromLink) {
    var c = t ? claims(t) : null;
    $("tokenfor").hidden = !t;
    $("tokenwho").hidden = !c;
    $("tokenunread").hidden = !!c;
    $("tokensub").textContent = c && typeof c.sub === "string" ? c.sub : "(none)";
    $("tokenrole").textContent = c && typeof c.role === "string" ? c.role : "(none)";
    $("tokenexp").textContent = c ? expiry(c.exp) : "";
    $("tokenlink").hidden = !fromLink;
    $("tokenreplace").hidden = !(t && sessionStorage.getItem(KEY));
  }

  // shown counts what the page showed last: a load that a login form (a
  // link's token, a sign-out) overtook must not draw its figures under it.
  var shown = 0;

  // Sign out is offered only while the tab holds a session.
  function signedIn() { $("signout").hidden = !sessionStorage.getItem(KEY); }

  function showLogin(message) {
    shown++;
    signedIn();
    $("login").hidden = false;
    $("panels").innerHTML = "";
    $("loginerror").textContent = message || "";
    $("status").textContent = "";
    document.body.setAttribute("data-state", "login");
  }

  // offer shows a link's token in the form, and nothing else: no figures,
  // neither its own nor those of a session the tab already has.
  function offer(t) {
    showLogin("");
    $("token").value = t;
    describe(t, true);
  }

  function load() {
    var token = sessionStorage.getItem(KEY);
    if (!token) { showLogin(""); return; }
    $("login").hidden = true;
    signedIn();
    $("token").value = "";
    describe("", false);
    var mine = ++shown;
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
      if (mine !== shown) { return; }
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
      if (mine !== shown) { return; }
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
  $("token").addEventListener("input", function () {
    describe($("token").value.trim(), $("token").value.trim() === linkToken);
  });
  $("keep").addEventListener("click", function () { load(); });
  $("signout").addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    showLogin("");
  });
  // A link followed while the page is open changes only the fragment.
  window.addEventListener("hashchange", function () {
    var t = fragmentToken();
    if (t && t !== sessionStorage.getItem(KEY)) { linkToken = t; offer(t); }
  });
  // A link with the token the tab already holds signs no one new in.
  if (linkToken && linkToken !== sessionStorage.getItem(KEY)) { offer(linkToken); } else { load(); }
})();
