// Live updates: the server streams the live part of the page as
// server-sent events, already rendered and escaped by html/template; this
// script swaps it in. Without JavaScript the pages work as they are.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) {
    return;
  }
  var source = new EventSource(live.getAttribute("data-live"));
  source.addEventListener("update", function (e) {
    var active = document.activeElement;
    if (active && live.contains(active) && active.tagName === "INPUT") {
      return; // do not pull a field away from under the user's typing
    }
    live.innerHTML = e.data;
    document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || 0) + 1));
  });
})();
