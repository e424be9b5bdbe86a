package plan

import (
	"context"
	"fmt"
	"io"

	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
)

// openPage tees each raw Host List page into the store as it streams: the
// pager writes into a pipe, a Put reads from it. A stored page is recorded
// in the ledger with its host count, under its page number, so that a page
// stored again overwrites its own record.
func (p *Planner) openPage(run string) qualys.OpenPage {
	return func(ctx context.Context, page int) (qualys.PageWriter, error) {
		pr, pw := io.Pipe()
		w := &pageWriter{pw: pw, done: make(chan stored, 1)}
		w.record = func(o objstore.Object) error {
			if err := p.l.MarkPage(ctx, run, page, o); err != nil {
				return fmt.Errorf("recording host list page %d: %w", page, err)
			}
			return nil
		}
		key := objstore.HostListPageKey(p.cfg.Prefix, run, page)
		go func() {
			obj, err := p.store.Put(ctx, key, pr, objstore.PutOptions{ContentType: "application/xml"})
			// Unblock a writer still writing after a failed Put.
			pr.CloseWithError(err)
			w.done <- stored{obj, err}
		}()
		return w, nil
	}
}

// stored is the outcome of one page's Put.
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
}

func (w *pageWriter) Write(b []byte) (int, error) { return w.pw.Write(b) }

// Close ends the page and returns once it is stored and recorded.
func (w *pageWriter) Close(hosts int) error {
	_ = w.pw.Close()
	s := <-w.done
	if s.err != nil {
		return s.err
	}
	s.obj.Hosts = hosts
	return w.record(s.obj)
}

// Abort makes the upload fail with cause, so nothing is stored.
func (w *pageWriter) Abort(cause error) {
	_ = w.pw.CloseWithError(cause)
	<-w.done
}
