"""gunicorn reads this file from the working directory (the API and metadata services of the Procfile).

After the fork, the application's import-time objects are moved out of the garbage collector's generations
(gc.freeze): full collections no longer walk them. A larger first-generation threshold makes fewer collections
while a big response (GET /servers/detail, 1,000 rows) is built. About 5-10 % of such a request's CPU time
(bench/README.md)."""
import gc


def post_fork(server, worker):
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


# Seconds an idle keep-alive connection stays open. gunicorn's default (2 s) equals the polling interval of
# `openstack server create/delete --wait` (openstacksdk polls every 2 s): the server closed the connection just as
# the client sent its next request on it, and the CLI failed with "Remote end closed connection without
# response". Longer than any client's polling interval, shorter than common load balancers' idle timeouts.
keepalive = 75
