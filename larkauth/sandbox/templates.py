"""HTML of the sandbox pages (string.Template; values are escaped by pages.py).

Kept as Python strings so the package needs no package-data configuration.
"""

from string import Template

LAYOUT = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title · Feishu sandbox</title>
<style>
body { font: 15px/1.5 system-ui, -apple-system, "PingFang SC", sans-serif; margin: 0;
       background: #f5f6f7; color: #1f2329; }
header.top { background: #3370ff; color: #fff; padding: 10px 24px; }
header.top a { color: #fff; text-decoration: none; font-weight: 600; }
main { max-width: 760px; margin: 24px auto; padding: 0 16px; }
.panel { background: #fff; border-radius: 8px; padding: 16px 20px; margin-bottom: 16px;
         box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.card { background: #fff; border-radius: 8px; margin-bottom: 20px; overflow: hidden;
        box-shadow: 0 1px 3px rgba(0,0,0,.12); }
.card .head { padding: 10px 16px; color: #fff; font-weight: 600; background: #3370ff; }
.card .head.grey { background: #8f959e; } .card .head.green { background: #34c724; }
.card .head.red { background: #f54a45; } .card .head.orange { background: #ff8800; }
.card .head.turquoise, .card .head.wathet { background: #14c0ff; }
.card .head.yellow { background: #ffc60a; color: #1f2329; }
.card .head.purple, .card .head.violet { background: #7f3bf5; }
.card .head.indigo { background: #4954e6; } .card .head.carmine { background: #f01d94; }
.card .body { padding: 12px 16px; } .card .meta { padding: 6px 16px; font-size: 12px;
        color: #8f959e; border-top: 1px solid #eee; }
.note { color: #646a73; font-size: 13px; } .subtitle { color: #646a73; }
.actions, .columns { display: flex; gap: 8px; flex-wrap: wrap; margin: 8px 0; }
.column { flex: 1; } .unknown, .img { color: #8f959e; font-size: 13px; }
form.inline { display: inline; margin: 0; }
.btn { display: inline-block; border: 1px solid #d0d3d6; background: #fff; color: #1f2329;
       border-radius: 6px; padding: 5px 14px; font-size: 14px; cursor: pointer;
       text-decoration: none; }
.btn-primary, .btn-primary_filled { background: #3370ff; border-color: #3370ff; color: #fff; }
.btn-danger, .btn-danger_filled { background: #f54a45; border-color: #f54a45; color: #fff; }
.toast { padding: 10px 16px; border-radius: 8px; margin-bottom: 16px; background: #e1eaff; }
.toast.success { background: #d9f5d6; } .toast.error { background: #fde2e2; }
.toast.warning { background: #feead2; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 4px 8px;
       border-bottom: 1px solid #eee; vertical-align: top; }
code { font-size: 13px; } .muted { color: #8f959e; }
label.user { display: block; padding: 6px 0; }
</style></head>
<body><header class="top"><a href="/_sandbox/">Feishu sandbox</a></header>
<main>$content</main>$script</body></html>
""")

INDEX = Template("""
<div class="panel"><h2>Users</h2>
<table><tr><th>Name</th><th>Email</th><th>open_id</th><th></th></tr>$users</table></div>
<div class="panel"><h2>Apps</h2>
<table><tr><th>app_id</th><th>Callback URL</th><th>Long connections</th></tr>$apps</table></div>
<div class="panel muted">Control API under <code>/_sandbox/api/</code>
(see <code>larkauth/sandbox/README.md</code>).</div>
""")

USER_ROW = Template(
    '<tr><td>$name <span class="muted">$en_name</span></td><td>$email</td>'
    '<td><code>$open_id</code></td><td><a href="$inbox">Inbox ($count)</a></td></tr>'
)

APP_ROW = Template("<tr><td><code>$app_id</code></td><td>$callback</td><td>$connections</td></tr>")

INBOX = Template("""
<h2>$name <span class="muted">$en_name · inbox</span></h2>
$toast
$cards
""")

TOAST = Template('<div class="toast $kind">$content</div>')

CARD = Template("""<div class="card" id="$message_id">
<div class="head $colour">$title</div>
<div class="body">$body</div>
<div class="meta">from <code>$app_id</code> · <code>$message_id</code> · $when$updated</div>
</div>""")

CALLBACK_BUTTON = Template("""<form class="inline" method="post" action="$action">
<input type="hidden" name="message_id" value="$message_id">
<input type="hidden" name="value" value="$value">
<input type="hidden" name="name" value="$name">
<button class="btn btn-$style" type="submit">$label</button></form>""")

# Reloads the inbox when a card arrives or changes.
INBOX_SCRIPT = Template("""<script>
(function () {
  var version = "$version";
  setInterval(function () {
    fetch("$version_url").then(function (r) { return r.json(); }).then(function (d) {
      if (d.version !== version) { window.location.replace("$self_url"); }
    }).catch(function () {});
  }, 2000);
})();
</script>""")

CONSENT = Template("""
<div class="panel">
<h2>Authorize $app_name</h2>
<p><code>$app_id</code> asks to act on your behalf with these permissions:</p>
<ul>$scopes</ul>
<form method="post" action="/open-apis/authen/v1/authorize">
$hidden
<p>Sign in as:</p>
$users
<p><button class="btn btn-primary" type="submit" name="decision" value="approve">Approve</button>
<button class="btn" type="submit" name="decision" value="deny">Deny</button></p>
</form></div>
""")

CONSENT_USER = Template(
    '<label class="user"><input type="radio" name="open_id" value="$open_id"$checked> '
    '$name <span class="muted">$en_name · $email</span></label>'
)

ERROR = Template("""
<div class="panel"><h2>Something went wrong</h2>
<p>Error code <b>$code</b></p><p>$message</p></div>
""")

AVATAR = Template("""<svg xmlns="http://www.w3.org/2000/svg" width="$size" height="$size"
 viewBox="0 0 100 100"><rect width="100" height="100" fill="$colour"/>
<text x="50" y="50" dy=".35em" text-anchor="middle" font-size="44" fill="#fff"
 font-family="sans-serif">$initial</text></svg>""")
