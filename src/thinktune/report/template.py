"""The report's page shell: inline CSS, the sample browser's script, and a Content-Security-Policy.

Everything is inline, and the policy (``default-src 'none'``; styles inline; the one script allowed by its
SHA-256 hash; images only as ``data:``) makes the browser refuse any network request the page might otherwise
make — a report opened years later, offline, looks the same. Without JavaScript every sample panel is shown;
with it, the browser filters by model, verdict and text. Print: navigation and controls are hidden, charts and
tables are kept whole across pages.
"""

from __future__ import annotations

import base64
import hashlib
from html import escape

CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1f2937;--mute:#6b7280;--line:#e5e7eb;--accent:#2563eb;--ok:#059669;
--bad:#dc2626;--warn:#b45309;--warnbg:#fffbeb;--infobg:#eff6ff;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
background:var(--bg);line-height:1.45}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;overflow-wrap:anywhere}
header.top{background:#111827;color:#f9fafb;padding:20px 16px 12px}
header.top h1{margin:0 0 4px;font-size:1.45rem;letter-spacing:-.01em}
header.top .sub{color:#cbd5e1;font-size:.9rem}
nav.toc{display:flex;flex-wrap:wrap;gap:6px;margin-top:12px}
nav.toc a{color:#e5e7eb;text-decoration:none;font-size:.85rem;border:1px solid #374151;border-radius:999px;
padding:2px 10px}
nav.toc a:hover{background:#1f2937}
main{max-width:1120px;margin:0 auto;padding:12px}
section.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin:14px 0}
section.card>h2{margin:0 0 10px;font-size:1.15rem}
h3{font-size:1rem;margin:18px 0 8px}
h4{font-size:.92rem;margin:12px 0 6px;color:var(--mute)}
p{margin:6px 0}
.note,.muted{color:var(--mute);font-size:.85rem}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.82rem}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f4f6;border-radius:6px;padding:8px;margin:4px 0;
max-height:28em;overflow:auto}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,150px),1fr));gap:8px;margin:8px 0}
.kpi{border:1px solid var(--line);border-radius:8px;padding:8px 10px}
.kpi .v{font-size:1.3rem;font-weight:650}
.kpi .v.s{font-size:1rem;font-weight:600}
.kpi .k{color:var(--mute);font-size:.78rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,360px),1fr));gap:12px}
figure.chart{margin:0;border:1px solid var(--line);border-radius:8px;padding:8px;break-inside:avoid;min-width:0}
figure.chart figcaption{font-weight:600;font-size:.88rem;margin-bottom:4px}
figure.chart .ylabel{font-weight:400;color:var(--mute);margin-left:6px;font-size:.8rem}
figure.chart svg{width:100%;height:auto;display:block}
svg .plot{fill:#fbfbfc;stroke:var(--line)}
svg .grid{stroke:#eceef1}
svg .axis{stroke:#9ca3af}
svg .diag{stroke:#9ca3af;stroke-dasharray:4 4}
svg .track{fill:#f1f3f5}
svg .whisker{stroke:#111827;stroke-width:1.5;fill:none}
svg text{font-family:inherit}
svg .tick{font-size:11px;fill:#4b5563}
svg .tick.small{font-size:10px}
svg .val{font-size:11px;fill:#111827;font-weight:600}
svg .label{font-size:11px;fill:#6b7280}
ul.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 12px;padding:0;margin:6px 0 0;font-size:.8rem}
ul.legend .sw{display:inline-block;width:14px;height:3px;background:var(--c);vertical-align:middle;margin-right:5px}
ul.legend .sw.dash{background:repeating-linear-gradient(90deg,var(--c) 0 4px,transparent 4px 7px)}
.tw{overflow-x:auto;max-width:100%;margin:6px 0}
table{border-collapse:collapse;font-size:.84rem;min-width:60%}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top;
overflow-wrap:break-word}
th{background:#f9fafb;font-weight:600;white-space:nowrap}
table.wrap td{overflow-wrap:anywhere}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td .ci{color:var(--mute);font-size:.75rem;display:block}
.up{color:var(--ok)}.down{color:var(--bad)}
.badge{display:inline-block;white-space:nowrap;border-radius:999px;padding:0 8px;font-size:.75rem;font-weight:600;
border:1px solid}
.b-correct{color:var(--ok);border-color:var(--ok)}.b-wrong{color:var(--bad);border-color:var(--bad)}
.b-none,.b-ungraded{color:var(--mute);border-color:#d1d5db}.b-abstained{color:var(--warn);border-color:var(--warn)}
.b-ok{color:var(--ok);border-color:var(--ok)}.b-viol{color:var(--bad);border-color:var(--bad)}
.b-unguarded{color:var(--warn);border-color:var(--warn)}
.warnings{margin:14px 0}
.alert{border-left:4px solid var(--warn);background:var(--warnbg);border-radius:6px;padding:8px 12px;margin:8px 0}
.alert.info{border-color:var(--accent);background:var(--infobg)}
.alert b{display:block}
.alert.ok{border-color:var(--ok);background:#ecfdf5}
details{margin:4px 0}
details>summary{cursor:pointer}
.sb-controls{display:none;flex-wrap:wrap;gap:8px;align-items:center;margin:8px 0}
.js .sb-controls{display:flex}
.sb-controls select,.sb-controls input{font:inherit;font-size:.9rem;padding:4px 8px;border:1px solid #d1d5db;
border-radius:6px;max-width:100%;min-width:0}
.sb-controls input{flex:1 1 180px}
.sb-panel h3{margin-top:10px}
.sample{border:1px solid var(--line);border-radius:8px;padding:6px 10px;margin:6px 0}
.sample>summary{display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
.sample>summary .q{flex:1 1 200px;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.sample .ans{font-size:.8rem;color:var(--mute);white-space:nowrap}
.sample .id{color:var(--mute);font-size:.75rem;font-family:ui-monospace,monospace}
.sample dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 10px;margin:6px 0}
.sample dt{color:var(--mute);font-size:.8rem}
.sample dd{margin:0;min-width:0}
.chips{display:flex;flex-wrap:wrap;gap:4px}
.chip{background:#eef2ff;border-radius:4px;padding:0 6px;font-size:.78rem;font-family:ui-monospace,monospace}
footer{max-width:1120px;margin:0 auto;padding:8px 12px 30px;color:var(--mute);font-size:.8rem}
@media (max-width:600px){main{padding:6px}section.card{padding:10px;border-radius:8px}
header.top h1{font-size:1.2rem}.kpi .v{font-size:1.1rem}
svg .tick{font-size:17px}svg .tick.small{font-size:14px}svg .label{font-size:16px}svg .val{font-size:17px}}
@media print{body{background:#fff}nav.toc,.sb-controls{display:none!important}
header.top{background:#fff;color:#000;border-bottom:2px solid #000}header.top .sub{color:#333}
section.card{border:none;padding:0;margin:10px 0;break-inside:auto}figure.chart,table,.alert{break-inside:avoid}
pre{max-height:none;overflow:visible}.tw{overflow:visible}h2,h3{break-after:avoid}}
"""

SCRIPT = """(function(){
var root=document.getElementById('samples');if(!root)return;
root.classList.add('js');
var sel=root.querySelector('#sb-model'),ver=root.querySelector('#sb-verdict'),q=root.querySelector('#sb-q'),
count=root.querySelector('#sb-count');
function apply(){var m=sel.value,v=ver.value,t=q.value.trim().toLowerCase(),shown=0,total=0;
root.querySelectorAll('.sb-panel').forEach(function(p){var on=(m==='*'||p.dataset.model===m);p.hidden=!on;
if(!on)return;p.querySelectorAll('.sample').forEach(function(s){total++;
var ok=(v==='all'||s.dataset.verdict===v)&&(!t||s.textContent.toLowerCase().indexOf(t)>=0);
s.hidden=!ok;if(ok)shown++;});});
count.textContent=shown+' of '+total+' shown';}
sel.addEventListener('change',apply);ver.addEventListener('change',apply);q.addEventListener('input',apply);
apply();})();"""


def script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()


CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src '{hash}'; base-uri 'none'; "
       "form-action 'none'")


def page(title: str, subtitle: str, nav: list[tuple[str, str]], body: str, footer: str) -> str:
    """The whole document around the sections' HTML."""
    links = "".join(f'<a href="#{escape(anchor)}">{escape(text)}</a>' for anchor, text in nav)
    csp = CSP.format(hash=script_hash(SCRIPT))
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="thinktune report">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>"
        f'<header class="top"><h1>{escape(title)}</h1><div class="sub">{subtitle}</div>'
        f'<nav class="toc">{links}</nav></header>\n<main>{body}</main>\n<footer>{footer}</footer>'
        f"<script>{SCRIPT}</script></body></html>\n"
    )
