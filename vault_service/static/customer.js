// The customer's pages: a same-origin file, as the CSP (script-src 'self') requires.
// Everything here is an enhancement; without it the pages still work and read in order.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  // Dates: the markup carries the UTC instant (<time datetime>) and a UTC text; show the
  // reader's own local time, in the page's language, with the UTC value kept as a tooltip.
  var lang = document.documentElement.lang || undefined;
  document.querySelectorAll("time[data-local][datetime]").forEach(function (element) {
    var instant = new Date(element.getAttribute("datetime"));
    if (isNaN(instant.getTime())) {
      return;
    }
    element.title = element.textContent;
    element.textContent = instant.toLocaleString(lang, {
      dateStyle: "long",
      timeStyle: "short",
      timeZoneName: undefined,
    });
  });

  // The error summary takes focus, so a screen reader announces it and the keyboard starts
  // there; each of its links moves focus to its input, not just the scroll position.
  var summary = document.querySelector("[data-error-summary]");
  if (summary) {
    summary.focus();
    summary.addEventListener("click", function (event) {
      var link = event.target.closest("a[href^='#']");
      var input = link && document.getElementById(link.getAttribute("href").slice(1));
      if (!input) {
        return;
      }
      event.preventDefault();
      var label = document.querySelector("label[for='" + input.id + "']");
      (label || input).scrollIntoView();
      input.focus({ preventScroll: true });
    });
  }
});
