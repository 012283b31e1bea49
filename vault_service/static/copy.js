// Copy and download buttons for what a page shows once (recovery codes, an agent's set-up link).
// A placeholder `[data-copy-source=<id>]` (hidden until this script runs) gets a Copy button and,
// with `data-download-name`, a Download button saving a .txt file. A same-origin file, as the
// CSP (script-src 'self') requires; no inline handler. Without it the values stay selectable.
"use strict";

(function () {
  // The text of the source: its <code> items one a line, or its own text.
  function textOf(source) {
    var items = source.querySelectorAll("code");
    if (!items.length) {
      return source.textContent.trim();
    }
    return Array.prototype.map.call(items, function (item) {
      return item.textContent.trim();
    }).join("\n") + "\n";
  }

  function button(text, label) {
    var element = document.createElement("button");
    element.type = "button";
    element.className = "small";
    element.textContent = text;
    element.setAttribute("aria-label", label);
    return element;
  }

  function enhance(tools) {
    var source = document.getElementById(tools.getAttribute("data-copy-source"));
    if (!source) {
      return;
    }
    var what = tools.getAttribute("data-copy-label") || "this";
    var status = document.createElement("span");
    status.className = "copy-status";
    status.setAttribute("role", "status");

    var copy = button("Copy", "Copy " + what);
    copy.addEventListener("click", function () {
      navigator.clipboard.writeText(textOf(source)).then(
        function () { status.textContent = "Copied."; },
        function () { status.textContent = "Copy failed: select the text and copy it."; }
      );
    });
    tools.append(copy);

    var name = tools.getAttribute("data-download-name");
    if (name) {
      var download = button("Download", "Download " + what + " as a text file");
      download.addEventListener("click", function () {
        // Made in the browser from what the page shows: nothing is fetched again.
        var url = URL.createObjectURL(new Blob([textOf(source)], { type: "text/plain" }));
        var anchor = document.createElement("a");
        anchor.href = url;
        anchor.download = name;
        document.body.append(anchor);
        anchor.click();
        anchor.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
        status.textContent = "Downloaded " + name + ".";
      });
      tools.append(download);
    }
    tools.append(status);
    tools.hidden = false;
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-copy-source]").forEach(enhance);
  });
})();
