"""The citizen web portal at `/` (issue 14 item 1; R2.2, R7.1): a citizen with no account sends a
request and gets its case number, checks its progress with the number and the phone's last four
digits, and rates the reported answer once (R7.4 by web).

`forms.py` what the API takes and answers, `intake.py` a request becoming a case through the same
intake workflow as a phone case, `progress.py` the progress check (a wrong suffix says nothing about
whether the case exists) and the rating, `router.py` the routes. The page is callcenter/web/portal.*.
Abuse limits are callcenter/throttle.py's counters; photos are ticketing/attachments.py's.
"""
