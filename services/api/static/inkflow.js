// inkflow web pages: progressive enhancement in plain JavaScript (no build step, no
// framework). Every page works without it where it can; this file only adds to it.
"use strict";

(function () {
  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
  });
})();
