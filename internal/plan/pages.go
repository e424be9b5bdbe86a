package plan

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
)

// openPage tees each raw Host List page into the store as it streams: the
// pager writes into a pipe, an upload reads from it. The upload is listed in
// the run record before a byte goes in (ledger.BeginPage), so that a pass
// taking the run over aborts it and a frozen pass cannot land the page late;
// once stored, the page is recorded under its own key, with its host count,
// by a write fenced against passes that lost the run (ledger.RecordPage).
func (p *Planner) openPage(pass, run string) qualys.OpenPage {
	return func(ctx context.Context, page int) (qualys.PageWriter, error) {
		key := objstore.HostListPageKey(p.cfg.Prefix, run, page)
		u, err := p.store.Begin(ctx, key, objstore.PutOptions{ContentType: "application/xml"})
		if err != nil {
			return nil, fmt.Errorf("starting host list page %d: %w", page, err)
		}
		slot, err := p.l.BeginPage(ctx, run, pass, page, u)
		if err != nil {
			p.abort(ctx, u)
			return nil, fmt.Errorf("registering host list page %d: %w", page, err)
		}
		pr, pw := io.Pipe()
		w := &pageWriter{pw: pw, done: make(chan stored, 1)}
		w.record = func(o objstore.Object) error {
			if err := p.l.RecordPage(ctx, slot, o); err != nil {
				return fmt.Errorf("recording host list page %d: %w", page, err)
			}
			return nil
		}
		w.failed = func() {
			// Complete aborted u when the stream failed; a failed Complete
			// may not have. Unlisting is tidiness, not safety: a listed
			// upload that ended is aborted again harmlessly.
			p.abort(ctx, u)
			_ = p.l.DropPage(ctx, slot)
		}
		go func() {
			obj, err := p.store.Complete(ctx, u, pr)
			// Unblock a writer still writing after a failed upload.
			pr.CloseWithError(err)
			w.done <- stored{obj, err}
		}()
		return w, nil
	}
}

// abort aborts u, logging a failure: nothing relies on it, since a pass
// taking the run over aborts every upload the record lists.
func (p *Planner) abort(ctx context.Context, u objstore.Upload) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.store.Abort(actx, u); err != nil {
		p.log.Warn("aborting a host list page upload", "key", u.Key, "err", err)
	}
}

// stored is the outcome of one page's upload.
type stored struct {
	obj objstore.Object
	err error
}

// pageWriter is the pager's end of one page upload. Close and Abort wait for
// the upload goroutine, so no upload outlives its page.
type pageWriter struct {
	pw     *io.PipeWriter
	done   chan stored
	record func(objstore.Object) error
	failed func()
}

func (w *pageWriter) Write(b []byte) (int, error) { return w.pw.Write(b) }

// Close ends the page and returns once it is stored and recorded.
func (w *pageWriter) Close(hosts int) error {
	_ = w.pw.Close()
	s := <-w.done
	if s.err != nil {
		w.failed()
		return s.err
	}
	s.obj.Hosts = hosts
	return w.record(s.obj)
}

// Abort makes the upload fail with cause, so nothing is stored.
func (w *pageWriter) Abort(cause error) {
	_ = w.pw.CloseWithError(cause)
	<-w.done
	w.failed()
}
