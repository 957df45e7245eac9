"""A queue file without a trace record (the spool renames a file into the
queue only after its record is durable, so such a file comes from a
restored database or a queue older than tracing) is held at start, not
relayed; a bounce the relay wrote itself (from <>) is relayed as usual.
The reverse, a record whose file never left tmp/, is taken back."""

import os
import sqlite3
import time

from conftest import wait_for


def queue_file(qid, sender, rcpt, body):
    return (f"POSTERN-QUEUE 1\nqid {qid}\ntime {int(time.time())}\nfrom {sender}\n"
            f"rcpt {rcpt}\n\n").encode() + body


def start_and_stop(make_postern, sink):
    """A daemon that made its spool and trace store, stopped."""
    p = make_postern(downstream=f"smtp://127.0.0.1:{sink.port}")
    # The listeners accept before the spool and the store are open.
    wait_for(lambda: "event=started" in p.logtext(), 10, what="the daemon started")
    p.stop()
    return p


def test_untraced_queue_file_is_held(make_postern, sink):
    p = start_and_stop(make_postern, sink)
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


def test_record_of_unacknowledged_file_is_taken_back(make_postern, sink):
    """A crash between a record's commit and its file's rename leaves the
    file in tmp/ (no client heard 250) and a record standing for no
    accepted message: at start the file goes and so does the record; other
    records stay."""
    p = start_and_stop(make_postern, sink)
    db = sqlite3.connect(p.trace_db)
    now = int(time.time())
    for i, qid in enumerate(("J0CRASHEDMIDWAY1", "J0ACCEPTEDEARLY1")):
        db.execute("INSERT INTO messages (qid, trace_id, time, client_ip, mail_from, size)"
                   " VALUES (?, ?, ?, '127.0.0.1', 'alice@mx.test', 10)",
                   (qid, f"T{i:025d}", now))
        db.execute("INSERT INTO message_rcpts (message, rcpt) VALUES (last_insert_rowid(),"
                   " 'r@example.net')")
    db.commit()
    db.close()
    with open(os.path.join(p.spool, "tmp", "J0CRASHEDMIDWAY1"), "wb") as f:
        f.write(queue_file("J0CRASHEDMIDWAY1", "alice@mx.test", "r@example.net",
                           b"Subject: half\r\n\r\nnever acknowledged\r\n"))
    # Not a queue id, empty, and a name SQL would choke on if pasted in.
    for junk in ("junk", "x'; DROP TABLE messages; --"):
        open(os.path.join(p.spool, "tmp", junk), "wb").close()
    p.start()
    wait_for(lambda: "event=trace_retracted qid=J0CRASHEDMIDWAY1 found=yes" in p.logtext(), 5,
             what="the retraction")

    def qids():
        db = sqlite3.connect(p.trace_db)
        try:
            return sorted(r[0] for r in db.execute("SELECT qid FROM messages"))
        finally:
            db.close()
    assert qids() == ["J0ACCEPTEDEARLY1"]
    assert os.listdir(os.path.join(p.spool, "tmp")) == []
    assert sink.messages() == []
