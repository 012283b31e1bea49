// Times in the agent's own time zone. The server renders every time as
// <time datetime="UTC ISO 8601">2026-01-31 09:00 UTC</time>, labelled UTC, which is what a
// browser without JavaScript shows; this rewrites the text in the browser's zone (named, e.g.
// "CET") and keeps the UTC original as the tooltip. A same-origin file, as the CSP requires.
// The customer's pages mark their times data-local and localise them in their own language and
// style (customer.js): those are left alone here.
"use strict";

(function () {
  function localise(element) {
    var moment = new Date(element.getAttribute("datetime"));
    var shown = element.textContent.trim();
    if (isNaN(moment.getTime()) || !/UTC$/.test(shown)) {
      return;  // not a UTC label of ours: leave it
    }
    var withDate = /^\d{4}-/.test(shown);
    var withSeconds = /\d\d:\d\d:\d\d/.test(shown);
    var options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
    if (withSeconds) {
      options.second = "2-digit";
    }
    if (withDate) {
      options.year = "numeric";
      options.month = "2-digit";
      options.day = "2-digit";
    }
    element.textContent = new Intl.DateTimeFormat(undefined, options).format(moment);
    element.title = shown;
    element.setAttribute("data-localised", "");
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("time[datetime]:not([data-local])").forEach(localise);
  });
})();
