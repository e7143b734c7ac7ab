// The Chancy dashboard's script: live updates, actions through the JSON API, the theme.
// Written for the dashboard's Content-Security-Policy: no inline code, no eval, and text is
// only ever put in the page as text (textContent), never as HTML.
(function () {
  "use strict";
  var meta = function (name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute("content") : "";
  };
  var base = meta("chancy-base");
  var csrf = meta("csrf-token");
  var interval = Math.max(1, parseFloat(meta("chancy-live-interval")) || 3) * 1000;

  // -- messages ---------------------------------------------------------------------------
  var toastTimer = null;
  function toast(text, bad) {
    var el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.className = bad ? "bad" : "";
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.hidden = true; }, bad ? 8000 : 4000);
  }

  // -- the API ----------------------------------------------------------------------------
  function api(method, path, body) {
    var options = {
      method: method,
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(base + path, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!response.ok) {
          var message = (data && data.error) || (response.status + " " + response.statusText);
          throw new Error(message);
        }
        return data;
      });
    });
  }

  function describe(result) {
    if (!result || !result.done) return "done";
    var skipped = Object.keys(result.skipped || {});
    var text = result.done.length + " done";
    if (skipped.length) {
      text += ", " + skipped.length + " skipped (" + result.skipped[skipped[0]] + ")";
    }
    return text;
  }

  // -- live updates -----------------------------------------------------------------------
  var live = document.querySelector("[data-live]");
  var liveButton = document.getElementById("live-toggle");
  var paused = false;
  var busy = false;

  function checkedIds() {
    var ids = [];
    document.querySelectorAll("input.select:checked").forEach(function (box) { ids.push(box.value); });
    return ids;
  }

  function refresh(force) {
    if (!live || busy || (!force && (paused || document.hidden))) return Promise.resolve();
    var active = document.activeElement;
    if (!force && active && live.contains(active) && /INPUT|SELECT|TEXTAREA/.test(active.tagName)) {
      return Promise.resolve(); // do not replace what someone is typing in
    }
    var openDetails = [];
    live.querySelectorAll("details[open]").forEach(function (d, i) { openDetails.push(i); });
    var keep = checkedIds();
    busy = true;
    return fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "X-Chancy-Live": "1", "Accept": "text/html" }
    }).then(function (response) {
      if (response.status === 401) { window.location.reload(); return; }
      if (!response.ok) throw new Error(response.status);
      return response.text().then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html; // rendered and escaped by the server; scripts never run
        live.replaceChildren(template.content);
        keep.forEach(function (id) {
          var box = live.querySelector('input.select[value="' + id + '"]');
          if (box) box.checked = true;
        });
        var details = live.querySelectorAll("details");
        details.forEach(function (d, i) { if (openDetails.indexOf(i) >= 0) d.open = true; });
        if (liveButton) liveButton.classList.remove("stale");
        countSelected();
      });
    }).catch(function () {
      if (liveButton) liveButton.classList.add("stale");
    }).then(function () { busy = false; });
  }

  if (live && liveButton) {
    liveButton.hidden = false;
    liveButton.addEventListener("click", function () {
      paused = !paused;
      liveButton.classList.toggle("paused", paused);
      liveButton.querySelector(".label").textContent = paused ? "paused" : "live";
      if (!paused) refresh(true);
    });
    setInterval(refresh, interval);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) refresh(); });
  }

  // -- the theme --------------------------------------------------------------------------
  var themeButton = document.getElementById("theme-toggle");
  if (themeButton) {
    themeButton.addEventListener("click", function () {
      var root = document.documentElement;
      var current = root.getAttribute("data-theme");
      if (current !== "light" && current !== "dark") {
        current = window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
      }
      var next = current === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { localStorage.setItem("chancy-theme", next); } catch (e) { /* ignore */ }
    });
  }

  // -- buttons that call the API ----------------------------------------------------------
  function after(result, done) {
    toast(describe(result));
    if (done) { window.location.href = done; } else { refresh(true); }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-action]");
    if (!button) return;
    event.preventDefault();
    var question = button.getAttribute("data-confirm");
    if (question && !window.confirm(question)) return;
    button.disabled = true;
    api(button.getAttribute("data-method") || "POST", button.getAttribute("data-url"))
      .then(function (result) { after(result, button.getAttribute("data-done")); })
      .catch(function (error) { toast(error.message, true); })
      .then(function () { button.disabled = false; });
  });

  // -- forms that call the API ------------------------------------------------------------
  function intOrNull(value) { return value === "" ? null : parseInt(value, 10); }

  var forms = {
    "queue-settings": function (form) {
      var data = new FormData(form);
      var tags = String(data.get("tags") || "").split("\n").map(function (t) { return t.trim(); })
        .filter(function (t) { return t; });
      var body = { concurrency: parseInt(data.get("concurrency"), 10) };
      if (tags.length) body.tags = tags;
      body.rate_limit = intOrNull(String(data.get("rate_limit")));
      body.rate_limit_window = body.rate_limit === null ? null : (intOrNull(String(data.get("rate_limit_window"))) || 60);
      return ["PUT", form.getAttribute("data-url"), body];
    },
    "pause": function (form) {
      var local = String(new FormData(form).get("resume_at_local") || "");
      var body = {};
      if (local) body.resume_at = new Date(local).toISOString();
      return ["POST", form.getAttribute("data-url"), body];
    },
    "delete-queue": function (form) {
      var data = new FormData(form);
      if (String(data.get("confirm")) !== form.getAttribute("data-name")) {
        throw new Error("type the queue's name to confirm");
      }
      var keep = data.get("keep_jobs") ? "false" : "true";
      return ["DELETE", form.getAttribute("data-url") + "?purge_jobs=" + keep, undefined];
    },
    "move-job": function (form) {
      return ["POST", form.getAttribute("data-url"), { queue: String(new FormData(form).get("queue")).trim() }];
    },
    "reprioritize-job": function (form) {
      return ["POST", form.getAttribute("data-url"), { priority: parseInt(new FormData(form).get("priority"), 10) }];
    }
  };

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var kind = form.getAttribute("data-form");
    if (!kind || !forms[kind]) return;
    event.preventDefault();
    var request;
    try { request = forms[kind](form); } catch (error) { toast(error.message, true); return; }
    var submit = form.querySelector('[type="submit"]');
    if (submit) submit.disabled = true;
    api(request[0], request[1], request[2])
      .then(function (result) {
        if (kind === "queue-settings" || kind === "pause") {
          toast(kind === "pause" ? "paused" : "saved");
          window.location.reload();
          return;
        }
        after(result, form.getAttribute("data-done"));
      })
      .catch(function (error) { toast(error.message, true); })
      .then(function () { if (submit) submit.disabled = false; });
  });

  // -- bulk actions on the jobs page ------------------------------------------------------
  var bulk = document.getElementById("bulk");
  function countSelected() {
    var counter = document.getElementById("selected-count");
    if (counter) counter.textContent = checkedIds().length + " selected";
  }
  document.addEventListener("change", function (event) {
    if (event.target.id === "select-all") {
      document.querySelectorAll("input.select").forEach(function (box) { box.checked = event.target.checked; });
    }
    if (event.target.matches("input.select, #select-all")) countSelected();
    if (bulk && event.target.name === "action" && bulk.contains(event.target)) {
      bulk.querySelectorAll(".arg").forEach(function (el) {
        el.hidden = !el.classList.contains("arg-" + event.target.value);
      });
    }
  });

  function showResult(action, result) {
    var panel = document.getElementById("bulk-result");
    if (!panel) return;
    panel.replaceChildren();
    var title = document.createElement("h2");
    title.textContent = action + ": " + result.done.length + " done, " +
      Object.keys(result.skipped).length + " skipped";
    panel.appendChild(title);
    var rows = result.done.map(function (id) { return [id, "done"]; });
    Object.keys(result.skipped).forEach(function (id) { rows.push([id, result.skipped[id]]); });
    if (rows.length) {
      var table = document.createElement("table");
      var head = table.createTHead().insertRow();
      ["Job", "Outcome"].forEach(function (label) {
        var th = document.createElement("th"); th.textContent = label; head.appendChild(th);
      });
      var body = table.createTBody();
      rows.slice(0, 500).forEach(function (row) {
        var tr = body.insertRow();
        var link = document.createElement("a");
        link.href = base + "/jobs/" + encodeURIComponent(row[0]);
        link.textContent = row[0];
        link.className = "mono";
        tr.insertCell().appendChild(link);
        var outcome = tr.insertCell();
        outcome.textContent = row[1];
        if (row[1] !== "done") outcome.className = "muted";
      });
      panel.appendChild(table);
    }
    panel.hidden = false;
  }

  if (bulk) {
    bulk.addEventListener("submit", function (event) {
      event.preventDefault();
      var data = new FormData(bulk);
      var action = String(data.get("action"));
      var body = {};
      if (data.get("target") === "selected") {
        var ids = checkedIds();
        if (!ids.length) { toast("select jobs first (the boxes on the left)", true); return; }
        body.ids = ids;
      } else {
        var where = JSON.parse(bulk.getAttribute("data-filters") || "{}");
        if (!Object.keys(where).length) {
          if (!window.confirm("No filter: this acts on EVERY job. Go on?")) return;
          body.all = true;
        } else {
          body.where = where;
        }
        if (body.all) {
          /* confirmed above */
        } else if (!window.confirm("Apply '" + action + "' to every job matching the filter?")) {
          return;
        }
      }
      if (action === "move") {
        body.queue = String(data.get("queue") || "").trim();
        if (!body.queue) { toast("name the queue to move to", true); return; }
      }
      if (action === "reprioritize") body.priority = parseInt(data.get("priority"), 10) || 0;
      api("POST", "/api/v1/jobs/" + action, body)
        .then(function (result) { showResult(action, result); toast(describe(result)); refresh(true); })
        .catch(function (error) { toast(error.message, true); });
    });
  }
})();
