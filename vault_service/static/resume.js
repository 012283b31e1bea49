// The page after a re-authentication at the identity provider: posts the interrupted access
// request or reveal again, as the agent sent it. A same-origin file, as the CSP (script-src
// 'self') requires; without it the agent presses Continue.
"use strict";

document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("resume-form");
  if (form) {
    form.submit();
  }
});
