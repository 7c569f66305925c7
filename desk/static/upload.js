/*
 * Resumable uploads for the submit page (progressive enhancement).
 *
 * Without JavaScript the page is a plain multipart form and nothing here runs. With it, and
 * with tus-js-client (desk/static/vendor/tus.min.js) supported, each chosen file is sent to
 * /uploads/ in pieces that survive a dropped Tor circuit, one file at a time, with progress
 * and a Pause/Resume button. When every file has arrived, the message (if any) is posted to
 * /submit on its own, and the page shows what was received, with the SHA-256 the desk
 * computed of each file.
 *
 * Progress is what the desk has acknowledged (the Upload-Offset of its answers), never what
 * the browser has handed to the network: over Tor the bytes leave the browser long before
 * they reach the desk. A file is "Arrived" only when the desk says its last byte is in.
 *
 * A file chosen again after it stopped part-way (the same name and size as one the page
 * lists as unfinished) continues that upload where the desk says it stopped. With "Send
 * slowly" on, the pieces have random sizes and go out no faster than the chosen speed, with
 * random pauses, so that a large file is not one long burst on the source's network.
 *
 * Nothing is written to browser storage: tus-js-client is told not to remember uploads, so
 * no file name, size or desk address outlives the tab. All text comes from the page
 * (data-* attributes on #upload-progress), so it can be translated with the templates.
 * No inline script or style, no eval: the page's Content-Security-Policy holds.
 */
(function () {
  "use strict";

  // Each piece is one request, and its answer moves the progress bar. Over Tor every request
  // costs a round trip of a second or so, and with 16 MiB pieces a slow circuit showed
  // nothing for minutes. A piece is sized to about CHUNK_SECONDS of sending at the speed the
  // last one went: the bar moves every few seconds at any speed, and the round trips cost a
  // few percent. The desk refuses pieces under 1 MiB that do not end a file (once an upload
  // holds many), so that is the smallest; the first piece is that size.
  var CHUNK_MIN = 1024 * 1024;
  var CHUNK_MAX = 16 * 1024 * 1024;
  var CHUNK_SECONDS = 10;

  // Sending slowly: the pieces' sizes are random, from CHUNK_MIN up to SLOW_CHUNK_SECONDS of
  // the cap (and SLOW_CHUNK_MAX). Each piece starts a turn as long as its size takes at
  // PACE_SHARE of the cap, and the next piece waits for the turn to end; a turn lost to a
  // slow network is never made up for, and one turn in PAUSE_ONE_IN ends with a random pause.
  // In any minute the desk then receives at most PACE_SHARE of the cap's minute plus the two
  // pieces at its edges: 42 + 2 * 10 = 62 seconds' worth, within the cap plus 10%. A piece
  // goes out as fast as the network takes it, so the source's network sees short bursts at
  // random intervals, not one long one.
  var PACE_SHARE = 0.7;
  var SLOW_CHUNK_SECONDS = 10;
  var SLOW_CHUNK_MAX = 4 * 1024 * 1024;
  var PAUSE_ONE_IN = 8;
  var PAUSE_MIN_MS = 5000;
  var PAUSE_MAX_MS = 20000;

  // tus-js-client retries only as many times as this list is long (and starts over whenever
  // a piece arrives). Tor circuits drop and take a while to rebuild: back off, then keep
  // trying every five minutes for about two hours before asking the source to press Resume.
  var RETRY_DELAYS = [0, 3000, 10000, 30000, 60000, 120000, 300000];
  (function extendRetries() {
    var total = RETRY_DELAYS.reduce(function (a, b) { return a + b; }, 0);
    while (total < 2 * 60 * 60 * 1000) {
      RETRY_DELAYS.push(300000);
      total += 300000;
    }
  })();

  // Each value goes into the translated text inside a first-strong isolate (U+2068 ...
  // U+2069): in a right-to-left paragraph "45.6 MB" then stays one piece, its unit beside its
  // number, instead of being pulled apart by the numbers around it. Invisible otherwise.
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (whole, key) {
      return Object.prototype.hasOwnProperty.call(values, key) ?
        "\u2068" + String(values[key]) + "\u2069" : whole;
    });
  }

  // Decimal units, written the page's way ("45.6 MB", "45,6 Mo", "45,6 МБ") from the
  // browser's locale data, as the server writes them with Babel; Latin digits, as on the
  // desk's pages. Without Intl (or its units), as in English.
  var LOCALE = (document.documentElement.lang || "en") + "-u-nu-latn";
  var UNITS = ["kilobyte", "megabyte", "gigabyte"];
  var ENGLISH = { "byte": "bytes", "kilobyte": "kB", "megabyte": "MB", "gigabyte": "GB" };

  function unitFor(size) {
    if (size < 1000) return { divisor: 1, name: "byte", decimals: 0 };
    var divisor = 1;
    for (var i = 0; i < UNITS.length; i++) {
      divisor *= 1000;
      if (size / divisor < 1000 || i === UNITS.length - 1) {
        return { divisor: divisor, name: UNITS[i], decimals: 1 };
      }
    }
    return { divisor: divisor, name: "gigabyte", decimals: 1 };
  }

  function formatted(value, decimals, unit) {
    var options = { minimumFractionDigits: decimals, maximumFractionDigits: decimals };
    if (unit) {
      options.style = "unit";
      options.unit = unit;
      options.unitDisplay = unit === "byte" ? "long" : "short";
    }
    try {
      return new Intl.NumberFormat(LOCALE, options).format(value);
    } catch (ignored) {
      return value.toFixed(decimals) + (unit ? " " + ENGLISH[unit] : "");
    }
  }

  // A number of bytes in `unit`, with the unit's name or without; rounded down with `floor`
  // (what has arrived is never shown as more than it is).
  function inUnit(size, unit, named, floor) {
    var value = size / unit.divisor;
    if (floor) {
      var scale = Math.pow(10, unit.decimals);
      value = Math.floor(value * scale) / scale;
    }
    return formatted(value, unit.decimals, named ? unit.name : null);
  }

  function humanSize(size) {
    return inUnit(size, unitFor(size), true);
  }

  // A number in [0, 1): from the browser's cryptographic generator, so that the sizes and
  // pauses of a slow sending follow no pattern an observer could learn.
  function random() {
    if (window.crypto && typeof window.crypto.getRandomValues === "function") {
      return window.crypto.getRandomValues(new Uint32Array(1))[0] / 4294967296;
    }
    return Math.random();
  }

  function statusOf(error) {
    var response = error && error.originalResponse;
    return response && typeof response.getStatus === "function" ? response.getStatus() : 0;
  }

  function Page(form, panel) {
    this.form = form;
    this.panel = panel;
    this.text = panel.dataset;
    this.fileInput = form.querySelector('input[type="file"]');
    this.message = form.querySelector("textarea[name=message]");
    this.sendButton = form.querySelector('button[type="submit"]');
    this.list = document.getElementById("upload-list");
    this.status = document.getElementById("upload-status");
    this.retryMessage = document.getElementById("retry-message");
    this.itemTemplate = document.getElementById("upload-item");
    this.items = [];
    this.token = "";
    this.finished = false;
    this.pacer = null;
    this.slowMode = document.getElementById("slow-mode");
    this.slowRate = document.getElementById("slow-rate");
    // The codename's unfinished uploads, as the desk listed them.
    this.unfinished = Array.prototype.slice.call(
      document.querySelectorAll("#unfinished li[data-upload]"));
    this.onBeforeUnload = this.warnBeforeLeaving.bind(this);
  }

  Page.prototype.start = function (files) {
    var page = this;
    this.token = this.form.elements.csrf_token.value;
    this.fileInput.disabled = true;
    this.sendButton.hidden = true;
    this.panel.hidden = false;
    var rate = this.slowMode ? Number(this.slowRate.value) : 0;
    if (this.slowMode && this.slowMode.checked && rate > 0) {
      this.pacer = new Pacer(rate);
    }
    if (this.slowMode) {
      this.slowMode.disabled = true;
      this.slowRate.disabled = true;
    }
    files.forEach(function (file) {
      page.items.push(new Item(page, file, page.claimUnfinished(file)));
    });
    window.addEventListener("beforeunload", this.onBeforeUnload);
    this.retryMessage.addEventListener("click", function () {
      page.sendMessage();
    });
    this.pump();
  };

  // The unfinished upload this file continues: one listed with the same name and size, not
  // already taken by another chosen file; null for a new upload.
  Page.prototype.claimUnfinished = function (file) {
    for (var i = 0; i < this.unfinished.length; i++) {
      var entry = this.unfinished[i];
      if (entry.dataset.name === file.name && Number(entry.dataset.size) === file.size) {
        this.unfinished.splice(i, 1);
        return { url: entry.dataset.upload, offset: Number(entry.dataset.offset) || 0 };
      }
    }
    return null;
  };

  Page.prototype.warnBeforeLeaving = function (event) {
    event.preventDefault();
    event.returnValue = this.text.leaveWarning;
    return this.text.leaveWarning;
  };

  // One file at a time: over Tor, parallel uploads share one slow circuit and all finish late.
  Page.prototype.pump = function () {
    if (this.finished) return;
    var waiting = null;
    for (var i = 0; i < this.items.length; i++) {
      var state = this.items[i].state;
      if (state === "sending") return;
      if (state === "waiting" && waiting === null) waiting = this.items[i];
    }
    if (waiting !== null) {
      waiting.send();
      return;
    }
    // Done when every file has arrived or was refused for good (a paused or interrupted file
    // still counts as on its way).
    var settled = this.items.every(function (item) {
      return item.state === "done" || item.state === "refused";
    });
    if (settled) this.allSettled();
  };

  Page.prototype.allSettled = function () {
    var arrived = this.items.some(function (item) { return item.state === "done"; });
    var hasMessage = this.message.value.trim() !== "";
    window.removeEventListener("beforeunload", this.onBeforeUnload);
    if (!arrived && !hasMessage) {
      this.status.textContent = this.text.nothingSent;
      return;
    }
    this.finished = true;
    if (hasMessage) {
      this.sendMessage();
    } else {
      this.showReceived(false);
    }
  };

  // The message goes through the ordinary form endpoint, without files; csrf_token must be
  // the first field, since the desk checks it before it reads anything else.
  Page.prototype.sendMessage = function () {
    var page = this;
    var body = new FormData();
    body.append("csrf_token", this.token);
    body.append("message", this.message.value);
    this.retryMessage.hidden = true;
    this.message.readOnly = true;
    this.status.textContent = this.text.sendingMessage;
    fetch(this.form.action, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        page.showReceived(true);
      })
      .catch(function () {
        page.message.readOnly = false;
        page.status.textContent = page.text.messageFailed;
        page.retryMessage.hidden = false;
      });
  };

  Page.prototype.showReceived = function (messageSent) {
    var received = document.getElementById("upload-received");
    var table = document.getElementById("received-files");
    var rows = table.querySelector("tbody");
    var arrived = this.items.filter(function (item) { return item.state === "done"; });
    var refused = this.items.filter(function (item) { return item.state === "refused"; });
    arrived.forEach(function (item) {
      var row = document.createElement("tr");
      var name = document.createElement("td");
      var size = document.createElement("td");
      var hash = document.createElement("td");
      var digest = document.createElement("code");
      name.textContent = item.file.name;
      name.dir = "auto";
      size.textContent = humanSize(item.file.size);
      // The desk's own SHA-256 of what it encrypted, as the page without JavaScript shows it.
      digest.className = "hash";
      digest.textContent = item.sha256;
      hash.appendChild(digest);
      row.appendChild(name);
      row.appendChild(size);
      row.appendChild(hash);
      rows.appendChild(row);
    });
    table.hidden = arrived.length === 0;
    document.getElementById("received-hashes").hidden = arrived.length === 0;
    if (refused.length > 0) {
      var missing = document.getElementById("received-missing");
      var list = missing.querySelector("ul");
      refused.forEach(function (item) {
        var entry = document.createElement("li");
        entry.textContent = item.file.name;
        entry.dir = "auto";
        list.appendChild(entry);
      });
      missing.hidden = false;
    }
    document.getElementById("received-message").hidden = !messageSent;
    document.getElementById("submit-area").hidden = true;
    received.hidden = false;
    // Let go of the files and the message now that they are with the desk.
    this.fileInput.value = "";
    this.message.value = "";
    var heading = received.querySelector("h1");
    heading.tabIndex = -1;
    heading.focus();
    window.scrollTo(0, 0);
  };

  // Sends pieces no faster than `rate` bytes per second (see PACE_SHARE).
  function Pacer(rate) {
    this.pace = rate * PACE_SHARE;
    this.largest = Math.max(CHUNK_MIN,
      Math.min(SLOW_CHUNK_MAX, Math.floor(rate * SLOW_CHUNK_SECONDS)));
    this.nextAt = 0;
    this.timer = null;
    this.cancel = null;
  }

  Pacer.prototype.chunkSize = function () {
    return CHUNK_MIN + Math.floor(random() * (this.largest - CHUNK_MIN + 1));
  };

  // Resolves when a piece of `size` bytes may go; its turn starts then.
  Pacer.prototype.wait = function (size) {
    var pacer = this;
    return new Promise(function (resolve, reject) {
      function go() {
        pacer.timer = null;
        pacer.cancel = null;
        var pause = random() * PAUSE_ONE_IN < 1 ?
          PAUSE_MIN_MS + random() * (PAUSE_MAX_MS - PAUSE_MIN_MS) : 0;
        pacer.nextAt = Date.now() + (size / pacer.pace) * 1000 + pause;
        resolve();
      }
      var delay = pacer.nextAt - Date.now();
      if (delay <= 0) {
        go();
        return;
      }
      pacer.cancel = reject;
      pacer.timer = window.setTimeout(go, delay);
    });
  };

  // Paused: the piece that was waiting for its turn is not sent.
  Pacer.prototype.stop = function () {
    if (this.timer === null) return;
    window.clearTimeout(this.timer);
    var cancel = this.cancel;
    this.timer = null;
    this.cancel = null;
    cancel(new Error("paused"));
  };

  // The file as tus-js-client reads it, one piece at a time: of the size this page chooses
  // (at most what tus-js-client asks for), and, sending slowly, when its turn comes.
  function PieceSource(item, file) {
    this.item = item;
    this.file = file;
    this.size = file.size;
  }

  PieceSource.prototype.slice = function (start, end) {
    var item = this.item;
    var file = this.file;
    var pacer = item.page.pacer;
    var stop = Math.min(end, file.size, start + (pacer ? pacer.chunkSize() : item.nextChunk));
    function piece() {
      item.pieceStartedAt = Date.now();
      return { value: file.slice(start, stop), done: stop >= file.size };
    }
    return pacer ? pacer.wait(stop - start).then(piece) : Promise.resolve(piece());
  };

  PieceSource.prototype.close = function () {};

  function Item(page, file, unfinished) {
    var item = this;
    this.page = page;
    this.file = file;
    this.state = "waiting";
    this.acknowledged = 0;
    this.nextChunk = CHUNK_MIN;
    this.pieceStartedAt = 0;
    this.sha256 = "";
    var node = page.itemTemplate.content.firstElementChild.cloneNode(true);
    this.progress = node.querySelector("progress");
    this.amount = node.querySelector(".upload-amount");
    this.note = node.querySelector(".upload-note");
    this.toggle = node.querySelector(".upload-toggle");
    this.node = node;
    node.querySelector(".upload-name").textContent = file.name;
    this.progress.setAttribute("aria-label", file.name);
    this.toggle.addEventListener("click", function () {
      item.pressed();
    });
    page.list.appendChild(node);
    this.upload = new window.tus.Upload(file, {
      endpoint: "/uploads/",
      // An unfinished upload of this codename: tus-js-client asks the desk where it stopped
      // (HEAD) and goes on from there, or starts anew if the desk no longer has it.
      uploadUrl: unfinished ? unfinished.url : null,
      headers: { "X-CSRFToken": page.token },
      metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
      chunkSize: CHUNK_MAX,
      fileReader: {
        openFile: function (input) {
          return Promise.resolve(new PieceSource(item, input));
        }
      },
      retryDelays: RETRY_DELAYS,
      // Never leave a trace of the file in the browser's storage.
      storeFingerprintForResuming: false,
      removeFingerprintOnSuccess: true,
      // No onProgress: it counts bytes handed to the network, not bytes the desk has.
      onAfterResponse: function (request, response) {
        item.answered(request, response);
      },
      onShouldRetry: function (error) {
        var status = statusOf(error);
        // Connection trouble and server hiccups are worth waiting out; a refusal is not.
        var retry = status === 0 || status >= 500 || status === 409 || status === 423 ||
          status === 429;
        if (retry) {
          // Say why when the desk said why: no valid journalist key, or a full disk.
          var note = status === 503 ? page.text.notAccepting
            : status === 507 ? page.text.noSpace : page.text.retrying;
          item.setNote(note, "retrying");
        }
        return retry;
      },
      onError: function (error) {
        item.failed(statusOf(error));
      },
      onSuccess: function (payload) {
        item.arrived(payload && payload.lastResponse);
      }
    });
    // What the desk had of an unfinished upload when it listed it.
    this.showProgress(unfinished ? Math.min(unfinished.offset, file.size) : 0, file.size);
    this.setNote(page.text.waiting, "");
    this.setButton(page.text.pause);
  }

  // Every answer of the desk that names the upload's offset (HEAD, PATCH) moves the progress
  // to it, and a new upload (POST) starts at nothing (an unfinished one the desk no longer
  // had is started again); a PATCH's answer also sizes the next piece from how fast this one
  // went.
  Item.prototype.answered = function (request, response) {
    var status = response.getStatus();
    if (status < 200 || status >= 300) return;
    var offset = request.getMethod() === "POST" ? 0 :
      parseInt(response.getHeader("Upload-Offset"), 10);
    if (isNaN(offset)) return;
    if (request.getMethod() === "PATCH" && this.pieceStartedAt > 0) {
      var seconds = Math.max((Date.now() - this.pieceStartedAt) / 1000, 0.001);
      var rate = (offset - this.acknowledged) / seconds;
      this.nextChunk = Math.max(CHUNK_MIN, Math.min(CHUNK_MAX, Math.round(rate * CHUNK_SECONDS)));
    }
    this.acknowledged = offset;
    this.showProgress(offset, this.file.size);
  };

  Item.prototype.showProgress = function (arrived, total) {
    var percent = total > 0 ? Math.floor((arrived / total) * 100) : 100;
    var unit = unitFor(total);
    this.progress.value = percent;
    this.amount.textContent = fill(this.page.text.of, {
      done: inUnit(arrived, unit, false, true),
      total: inUnit(total, unit, true, false),
      percent: formatted(percent, 0, null)
    });
    if (this.state === "sending" && this.note.dataset.kind === "retrying" && arrived > 0) {
      this.setNote(this.sendingText(), "");
    }
  };

  Item.prototype.sendingText = function () {
    return this.page.pacer ? this.page.text.sendingSlowly : this.page.text.sending;
  };

  Item.prototype.setNote = function (text, kind) {
    this.note.textContent = text;
    this.note.dataset.kind = kind;
    this.node.dataset.state = this.state;
  };

  Item.prototype.setButton = function (label) {
    this.toggle.textContent = label;
  };

  Item.prototype.send = function () {
    this.state = "sending";
    this.setNote(this.sendingText(), "");
    this.setButton(this.page.text.pause);
    this.upload.start();
  };

  Item.prototype.pressed = function () {
    var text = this.page.text;
    if (this.state === "sending") {
      // abort() keeps the upload on the desk; start() later asks the desk where it stopped.
      this.upload.abort();
      if (this.page.pacer) this.page.pacer.stop();
      this.state = "paused";
      this.setNote(text.paused, "");
      this.setButton(text.resume);
      this.page.pump();
    } else if (this.state === "waiting") {
      this.state = "paused";
      this.setNote(text.paused, "");
      this.setButton(text.resume);
    } else if (this.state === "paused" || this.state === "failed") {
      this.state = "waiting";
      this.setNote(text.waiting, "");
      this.setButton(text.pause);
      this.page.pump();
    }
  };

  Item.prototype.failed = function (status) {
    var text = this.page.text;
    if (status === 413 || status === 400 || status === 403) {
      // Refused for good: too large, or this page's session or token is no longer valid.
      // Pressing Resume would only be refused again.
      this.state = "refused";
      this.setNote(status === 413 ? text.tooLarge : text.sessionEnded, "failed");
      this.toggle.hidden = true;
    } else {
      this.state = "failed";
      this.setNote(status === 507 ? text.noSpace : text.failed, "failed");
      this.setButton(text.resume);
    }
    this.page.pump();
  };

  // The desk has the last byte: its answer names the SHA-256 it computed of the whole file.
  Item.prototype.arrived = function (response) {
    this.state = "done";
    this.sha256 = (response && response.getHeader("Desk-Sha256")) || "";
    this.showProgress(this.file.size, this.file.size);
    this.setNote(this.page.text.done, "done");
    this.toggle.hidden = true;
    this.page.pump();
  };

  function init() {
    var form = document.getElementById("submit-form");
    var panel = document.getElementById("upload-progress");
    var tus = window.tus;
    if (!form || !panel || !tus || !tus.isSupported) return;
    if (typeof window.fetch !== "function" || typeof window.FormData !== "function") return;
    if (!("content" in document.createElement("template"))) return;
    // What only this script makes work shows; what says it needs JavaScript goes.
    Array.prototype.forEach.call(document.querySelectorAll("[data-javascript]"), function (node) {
      node.hidden = false;
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-no-javascript]"),
      function (node) {
        node.hidden = true;
      });
    var page = new Page(form, panel);
    form.addEventListener("submit", function (event) {
      if (page.items.length > 0) {
        event.preventDefault(); // already sending
        return;
      }
      var files = Array.prototype.slice.call(page.fileInput.files || []);
      // No files: the ordinary form sends the message.
      if (files.length === 0) return;
      event.preventDefault();
      page.start(files);
    });
  }

  init();
})();
