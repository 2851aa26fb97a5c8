# Drives headless Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe: fd 3
# is what Chromium reads, fd 4 what it writes; messages end with NUL). Opens the admin's /flows,
# waits until its event stream is open, runs the curl command given (a request through ward),
# then measures how long until a row with MARKER is on the page; opens that row and returns the
# page's HTML. Prints one JSON object. Every wait is bounded.
import fcntl, json, os, select, subprocess, sys, tempfile, time

url, curl_json, marker = sys.argv[1], sys.argv[2], sys.argv[3]
curl_args = json.loads(curl_json)
STARTUP, WAIT = 90.0, 10.0

def high(fd):
    # Above 3 and 4, so that placing Chromium's ends there cannot clobber one of ours.
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved

to_chrome_r, to_chrome_w = map(high, os.pipe())
from_chrome_r, from_chrome_w = map(high, os.pipe())
# Chromium's ends on 3 and 4 in this process (whatever was there is moved away first), then
# inherited as they are.
for fd in (3, 4):
    try:
        os.fstat(fd)
        raise SystemExit(f"fd {fd} is in use; run me with only stdio open")
    except OSError:
        pass
os.dup2(to_chrome_r, 3)
os.dup2(from_chrome_w, 4)

home = tempfile.mkdtemp(prefix="ward-cdp-")
chrome = subprocess.Popen(
    ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
     "--disable-background-networking", "--disable-component-update", "--disable-sync",
     "--disable-dev-shm-usage", "--remote-debugging-pipe",
     "--user-data-dir=" + os.path.join(home, "profile"), "about:blank"],
    pass_fds=(3, 4), env=dict(os.environ, HOME=home),
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for fd in (to_chrome_r, from_chrome_w, 3, 4):
    os.close(fd)

buf = b""
next_id = 0

def send(method, params=None, session=None):
    global next_id
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    os.write(to_chrome_w, json.dumps(msg).encode() + b"\0")
    return next_id

def call(method, params=None, session=None, timeout=STARTUP):
    global buf
    want = send(method, params, session)
    deadline = time.monotonic() + timeout
    while True:
        while b"\0" in buf:
            raw, buf = buf.split(b"\0", 1)
            msg = json.loads(raw)
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(method)
        ready, _, _ = select.select([from_chrome_r], [], [], left)
        if ready:
            chunk = os.read(from_chrome_r, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            buf += chunk

def js(expr, session):
    res = call("Runtime.evaluate", {"expression": expr, "returnByValue": True}, session, WAIT)
    return res["result"].get("value")

def wait_for(expr, session, timeout, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if js(expr, session):
            return True
        time.sleep(step)
    return False

out = {}
try:
    target = call("Target.createTarget", {"url": url})["targetId"]
    session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    out["live"] = wait_for("document.getElementById('live')?.dataset.state === 'open'", session, STARTUP, 0.1)
    done = subprocess.run(curl_args, capture_output=True, timeout=60)
    out["curl_rc"] = done.returncode
    after = time.monotonic()
    row = f"Array.from(document.querySelectorAll('tr.flow')).find(tr => tr.textContent.includes({json.dumps(marker)}))"
    out["appeared"] = wait_for(f"!!{row}", session, WAIT)
    out["seconds"] = time.monotonic() - after
    js(f"{row}?.click()", session)
    out["detail"] = wait_for("!!document.querySelector('tr.detail pre.timings')", session, WAIT)
    out["html"] = js("document.documentElement.outerHTML", session)
    out["har_href"] = js("document.getElementById('har').href", session)
finally:
    try:
        send("Browser.close")
        chrome.wait(timeout=10)
    except Exception:
        chrome.kill()
        chrome.wait()
print(json.dumps(out))
