"""Malformed requests: each gets a 4xx page of the desk's own and leaves nothing stored.

Cases already in tests/web/test_submit.py and tests/web/test_tus.py are not repeated here.

Hand-written tables and hypothesis examples (cases.py) go through the Flask test client
against one desk shared by this folder (a source with a codename, a tus upload under way, alice
logged in): a snapshot of everything a request could leave behind (rows, ciphertext, custody
log, keyring) is taken before each request and compared after it, so one shared desk is as
strict as a fresh one per request and some 500 requests take seconds. The worst cases (broken
boundaries, bodies cut short, huge headers, chunked framing, clients that stop mid-body) then
go over raw sockets to a real `desk serve source`, which must stay up with no traceback in its
log (test_real_server.py).

HTML answers must be the desk's error page (`id="error-message"` and the desk stylesheet);
the tus endpoint answers client programs in short plain text naming the protocol. A few odd
inputs are accepted by design and only their safe outcome is checked (cases.ACCEPTED).
test_tally.py, run after the others, counts the distinct malformed requests sent.
"""
