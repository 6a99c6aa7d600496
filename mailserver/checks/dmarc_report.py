"""DMARC aggregate reports (RFC 7489 §7.2, Appendix C) from the recorded verdicts.

Pure: takes the lines ``dmarc_log.DmarcLog`` wrote for one UTC day and
returns one XML document per policy domain (the domain whose record asked
for reports).  Rows aggregate messages with the same source IP, evaluated
policy, identifiers and authentication results (§7.2.1.1 "record"), each
with its ``count``.  ``mailserver dmarc report DATE`` prints them;
``queue/reporting.py`` mails them to the ``rua=`` addresses when
``[checks] dmarc_report_send`` is on (off by default).
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any


def _text(parent: ET.Element, tag: str, value: object) -> ET.Element:
    el = ET.SubElement(parent, tag)
    el.text = str(value)
    return el


def reports(lines: Iterable[Mapping[str, Any]], *, day: dt.date, org_name: str,
            email: str) -> dict[str, str]:
    """Policy domain -> its aggregate report (XML text, UTF-8 declared) for ``day``.

    ``org_name``: us, the reporter (our host name); ``email``: where the
    domain owner may write back (§7.2.1.1 report_metadata).
    """
    by_domain: dict[str, tuple[Mapping[str, Any], dict[str, int]]] = {}
    rows: dict[str, dict[str, Mapping[str, Any]]] = {}
    for line in lines:
        published = line["policy_published"]
        domain = str(published["domain"])
        fields = {k: line[k] for k in ("source_ip", "disposition", "dkim_aligned", "spf_aligned",
                                    "header_from", "envelope_from", "spf", "dkim")}
        key = json.dumps(fields, sort_keys=True)
        entry = by_domain.setdefault(domain, (published, {}))
        entry[1][key] = entry[1].get(key, 0) + 1
        rows.setdefault(domain, {})[key] = fields
    begin = calendar.timegm(day.timetuple())
    out: dict[str, str] = {}
    for domain, (published, counts) in sorted(by_domain.items()):
        feedback = ET.Element("feedback")
        _text(feedback, "version", "1.0")
        meta = ET.SubElement(feedback, "report_metadata")
        _text(meta, "org_name", org_name)
        _text(meta, "email", email)
        _text(meta, "report_id", f"{domain}.{day.isoformat()}")
        dates = ET.SubElement(meta, "date_range")
        _text(dates, "begin", begin)
        _text(dates, "end", begin + 86399)
        pol = ET.SubElement(feedback, "policy_published")
        _text(pol, "domain", domain)
        for tag in ("adkim", "aspf", "p", "sp", "pct"):
            _text(pol, tag, published[tag])
        for key, count in counts.items():
            row: Mapping[str, Any] = rows[domain][key]
            record = ET.SubElement(feedback, "record")
            r = ET.SubElement(record, "row")
            _text(r, "source_ip", row["source_ip"])
            _text(r, "count", count)
            evaluated = ET.SubElement(r, "policy_evaluated")
            _text(evaluated, "disposition", row["disposition"])
            _text(evaluated, "dkim", row["dkim_aligned"])
            _text(evaluated, "spf", row["spf_aligned"])
            ids = ET.SubElement(record, "identifiers")
            if row["envelope_from"]:
                _text(ids, "envelope_from", row["envelope_from"])
            _text(ids, "header_from", row["header_from"])
            results = ET.SubElement(record, "auth_results")
            for d in row["dkim"]:
                el = ET.SubElement(results, "dkim")
                _text(el, "domain", d["domain"])
                if d["selector"]:
                    _text(el, "selector", d["selector"])
                _text(el, "result", d["result"])
            spf = row["spf"]
            el = ET.SubElement(results, "spf")
            _text(el, "domain", spf["domain"])
            _text(el, "scope", spf["scope"])
            _text(el, "result", spf["result"])
        ET.indent(feedback)
        out[domain] = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                       + ET.tostring(feedback, encoding="unicode") + "\n")
    return out
