// The landing page's only script. Tor Browser at the Safest level runs no JavaScript, so if
// this runs at all, the visitor is not at Safest: say how to get there (on a computer or on
// Android), or, when this does not look like Tor Browser, say to use it. It reads nothing
// beyond what any page can see, sends nothing, and stores nothing.
(function () {
  "use strict";
  var onion = /\.onion$/.test(window.location.hostname);
  // Tor Browser reports itself as Firefox and, to look like every other Tor Browser, UTC.
  var firefoxInUtc = /Firefox\//.test(navigator.userAgent) &&
    new Date().getTimezoneOffset() === 0;
  // Tor Browser for Android has no shield icon: its note says where the level is there.
  var android = /Android/.test(navigator.userAgent);
  var id = onion || firefoxInUtc ? (android ? "raise-security-android" : "raise-security")
    : "use-tor-browser";
  var note = document.getElementById(id);
  if (note) {
    note.hidden = false;
  }
})();
