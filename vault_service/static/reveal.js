// The reveal page: masks each value until asked, copies it to the clipboard, counts down to the
// grant's end, and removes every value from the page when the grant ends, is revoked or the
// ticket closes. A same-origin file, as the CSP (script-src 'self') requires. Without it the
// page still works: the values are shown in clear (the <noscript> note says so).
"use strict";

(function () {
  var POLL_MS = 2000;
  var MASK = "••••••••";
  var REASONS = {
    expired: "Your access has ended (its time ran out). The values were removed from this page.",
    revoked: "Your access was ended. The values were removed from this page.",
    closed: "The ticket was closed: its credentials are being deleted. The values were removed from this page.",
    session: "Your session has ended. The values were removed from this page.",
  };

  var root, ended = false, pollTimer = null, tickTimer = null;

  // Remove, not hide: a hidden value is still in the DOM for any script or extension to read.
  function wipe(reason) {
    if (ended) {
      return;
    }
    ended = true;
    clearInterval(pollTimer);
    clearInterval(tickTimer);
    var credentials = document.getElementById("credentials");
    if (credentials) {
      credentials.remove();
    }
    var endForm = document.getElementById("end-grant");
    if (endForm) {
      endForm.hidden = true;  // nothing left to end
    }
    var wrap = document.getElementById("countdown-wrap");
    if (wrap) {
      wrap.hidden = true;
    }
    var message = document.getElementById("ended");
    message.textContent = REASONS[reason] || REASONS.revoked;
    message.hidden = false;
    root.setAttribute("data-ended", reason);
  }

  function button(text, label) {
    var element = document.createElement("button");
    element.type = "button";
    element.className = "small";
    element.textContent = text;
    element.setAttribute("aria-label", label);
    return element;
  }

  function enhance(field) {
    var id = field.getAttribute("data-field");
    var shown = document.getElementById(id);
    var raw = document.getElementById(id + "-raw");
    var label = field.previousElementSibling;  // the field's <dt>
    var name = (label && label.textContent) || "value";
    var mask = document.createElement("code");
    mask.className = "mask";
    mask.textContent = MASK;
    mask.setAttribute("aria-label", name + " hidden");
    shown.hidden = true;
    shown.after(mask);

    var toggle = button("Show", "Show " + name);
    toggle.setAttribute("aria-pressed", "false");
    toggle.setAttribute("aria-controls", id);
    toggle.addEventListener("click", function () {
      var showing = shown.hidden;
      shown.hidden = !showing;
      mask.hidden = showing;
      toggle.textContent = showing ? "Hide" : "Show";
      toggle.setAttribute("aria-label", (showing ? "Hide " : "Show ") + name);
      toggle.setAttribute("aria-pressed", showing ? "true" : "false");
    });

    var copy = button("Copy", "Copy " + name);
    var status = document.createElement("span");
    status.className = "copy-status";
    status.setAttribute("role", "status");
    copy.addEventListener("click", function () {
      // The exact value (the shown one marks hidden characters), read at the moment of use.
      navigator.clipboard.writeText(JSON.parse(raw.textContent)).then(
        function () { status.textContent = "Copied."; },
        function () { status.textContent = "Copy failed: select the value and copy it."; }
      );
    });
    var tools = document.createElement("span");
    tools.className = "tools";
    tools.append(toggle, copy, status);
    field.append(tools);
  }

  function remaining(end) {
    var seconds = Math.max(0, Math.round((end - Date.now()) / 1000));
    var minutes = Math.floor(seconds / 60);
    var rest = seconds % 60;
    return { seconds: seconds, text: minutes + ":" + (rest < 10 ? "0" : "") + rest };
  }

  function countdown() {
    var time = document.getElementById("grant-end");
    var end = new Date(time.getAttribute("datetime")).getTime();
    var output = document.getElementById("countdown");
    document.getElementById("countdown-wrap").hidden = false;
    function tick() {
      var left = remaining(end);
      output.textContent = left.text;
      if (left.seconds <= 0) {
        wipe("expired");
      }
    }
    tick();
    tickTimer = setInterval(tick, 1000);
  }

  function poll() {
    fetch(root.getAttribute("data-status-url"), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    }).then(function (response) {
      if (response.status === 401 || response.status === 403 || response.status === 404) {
        wipe("session");  // fail closed: a session that cannot ask may not keep looking
        return null;
      }
      return response.ok ? response.json() : null;  // a 5xx: ask again at the next beat
    }).then(function (status) {
      if (status && !status.active) {
        wipe(status.reason);
      }
    }).catch(function () {
      // Offline for a moment: the countdown still removes the values at the grant's end.
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    root = document.getElementById("reveal");
    if (!root) {
      return;
    }
    document.querySelectorAll("#credentials dd.field").forEach(enhance);
    countdown();
    if (!ended) {
      pollTimer = setInterval(poll, POLL_MS);
    }
  });
})();
