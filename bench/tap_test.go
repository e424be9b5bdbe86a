package main

import "testing"

func TestClassify(t *testing.T) {
	tests := []struct {
		subject, reply, body string
		want                 string
	}{
		{"qfetch.batch.r1", "_INBOX.x.y", "", opPublish},
		{"qfetch.batch.r1", "$JS.ACK.QFETCH_BATCHES.workers.1.2.3.4.5", "", opDeliver},
		{"$KV.QFETCH_RUNS.r1.done.1", "$JS.ACK.KV_QFETCH_RUNS.c.1.2.3.4.5", "", opDeliver},
		{"$KV.QFETCH_RUNS.r1.done.1", "_INBOX.a.b", "{}", opKVWrite},
		{"$JS.API.CONSUMER.MSG.NEXT.QFETCH_BATCHES.workers", "_INBOX.a", "{}", opFetch},
		{"$JS.ACK.QFETCH_BATCHES.workers.1.2.3.4.5", "", "+ACK", opAck},
		{"$JS.ACK.QFETCH_BATCHES.workers.1.2.3.4.5", "_INBOX.a", "+ACK", opAck},
		{"$JS.ACK.QFETCH_BATCHES.workers.1.2.3.4.5", "", "", opAck},
		{"$JS.ACK.QFETCH_BATCHES.workers.1.2.3.4.5", "", "+WPI", opWPI},
		{"$JS.ACK.QFETCH_BATCHES.workers.1.2.3.4.5", "", `-NAK {"delay":1}`, opNak},
		{"$JS.ACK.QFETCH_BATCHES.workers.1.2.3.4.5", "", "+TERM bad", opTerm},
		{"$JS.API.DIRECT.GET.KV_QFETCH_RUNS.$KV.QFETCH_RUNS.r1", "_INBOX.a", "", opRead},
		{"$JS.API.STREAM.MSG.GET.KV_QFETCH_RUNS", "_INBOX.a", "{}", opRead},
		{"$JS.API.CONSUMER.CREATE.KV_QFETCH_RUNS", "_INBOX.a", "{}", opAPIOther},
		{"qfetch.table.r1", "_INBOX.a", "{}", opTable},
		{"_INBOX.abc.def", "", "x", ""},
		{"$JS.EVENT.ADVISORY.API", "", "{}", ""},
		{"$JS.FC.KV_QFETCH_RUNS.x.y", "", "", opOther},
	}
	for _, tt := range tests {
		if got, _ := classify(tt.subject, tt.reply, []byte(tt.body)); got != tt.want {
			t.Errorf("classify(%q, %q, %q) = %q, want %q", tt.subject, tt.reply, tt.body, got, tt.want)
		}
	}
}
