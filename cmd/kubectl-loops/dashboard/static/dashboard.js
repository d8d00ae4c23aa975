// Live updates: the server streams the live part of the page as
// server-sent events, already rendered and escaped by html/template; this
// script swaps it in. Without JavaScript the pages work as they are.
//
// A swap replaces the links and buttons under the pointer. A click is a
// press and a release on the same element, so a swap between the two
// would lose it: while a button is pressed inside the live part, updates
// wait, and the latest one goes in once the click has been delivered.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) {
    return;
  }
  var pending = null; // the latest update not yet swapped in
  var pressed = false;
  var shown = null; // the update swapped in last

  function swap() {
    if (pending === null || pressed) {
      return;
    }
    var active = document.activeElement;
    if (active && live.contains(active) && active.tagName === "INPUT") {
      return; // do not pull a field away from under the user's typing
    }
    var html = pending;
    pending = null;
    if (html !== shown) {
      live.innerHTML = html;
      shown = html;
    }
    document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || 0) + 1));
  }

  live.addEventListener("pointerdown", function () {
    pressed = true;
  });
  function release() {
    if (!pressed) {
      return;
    }
    pressed = false;
    // The click follows the release in the same turn: swap after it.
    window.setTimeout(swap, 0);
  }
  document.addEventListener("pointerup", release);
  document.addEventListener("pointercancel", release);

  var source = new EventSource(live.getAttribute("data-live"));
  source.addEventListener("update", function (e) {
    pending = e.data;
    swap();
  });
})();
