// Keeps the overview live: polls its live part with If-None-Match and swaps it in when
// the server says it changed. Without this script the page is a plain page.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var url = live.getAttribute("data-poll");
  var tag = null;
  function poll() {
    var headers = tag ? { "If-None-Match": tag } : {};
    fetch(url, { headers: headers, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 200) {
          tag = response.headers.get("ETag");
          return response.text().then(function (html) { live.innerHTML = html; });
        }
      })
      .catch(function () { /* the server is away: try again next time */ })
      .then(function () { setTimeout(poll, 500); });
  }
  setTimeout(poll, 500);
})();
