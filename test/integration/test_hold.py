"""A queue file without a trace record (the spool renames a file into the
queue only after its record is durable, so such a file comes from a
restored database or a queue older than tracing) is held at start, not
relayed; a bounce the relay wrote itself (from <>) is relayed as usual."""

import os
import time

from conftest import wait_for


def queue_file(qid, sender, rcpt, body):
    return (f"POSTERN-QUEUE 1\nqid {qid}\ntime {int(time.time())}\nfrom {sender}\n"
            f"rcpt {rcpt}\n\n").encode() + body


def test_untraced_queue_file_is_held(make_postern, sink):
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    p.stop()
    q = os.path.join(p.spool, "queue")
    files = {
        "J0UNTRACED000001": queue_file("J0UNTRACED000001", "alice@mx.test", "r@example.net",
                                       b"Subject: untraced\r\n\r\nnever acknowledged\r\n"),
        "J0BOUNCE00000001": queue_file("J0BOUNCE00000001", "", "alice@mx.test",
                                       b"Subject: a bounce\r\n\r\ndelivery failed\r\n"),
    }
    for qid, data in files.items():
        with open(os.path.join(q, qid), "wb") as f:
            f.write(data)
    p.start()
    msgs = sink.wait_messages(1)
    time.sleep(1)
    msgs = sink.messages()
    assert len(msgs) == 1 and b"Subject: a bounce" in msgs[0], msgs
    assert os.path.exists(os.path.join(p.spool, "hold", "J0UNTRACED000001"))
    assert "J0UNTRACED000001" not in p.queue()
    wait_for(lambda: "event=held qid=J0UNTRACED000001" in p.logtext(), 5, what="the held log line")
