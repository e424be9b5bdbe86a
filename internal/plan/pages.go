package plan

import (
	"context"
	"io"

	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
)

// openPage tees each raw Host List page into the store as it streams: the
// pager writes into a pipe, a Put reads from it.
func (p *Planner) openPage(run string) qualys.OpenPage {
	return func(ctx context.Context, page int) (qualys.PageWriter, error) {
		pr, pw := io.Pipe()
		w := &pageWriter{pw: pw, done: make(chan error, 1)}
		key := objstore.HostListPageKey(p.cfg.Prefix, run, page)
		go func() {
			_, err := p.store.Put(ctx, key, pr, objstore.PutOptions{ContentType: "application/xml"})
			// Unblock a writer still writing after a failed Put.
			pr.CloseWithError(err)
			w.done <- err
		}()
		return w, nil
	}
}

// pageWriter is the pager's end of one page upload. Close and Abort wait for
// the upload goroutine, so no upload outlives its page.
type pageWriter struct {
	pw   *io.PipeWriter
	done chan error
}

func (w *pageWriter) Write(b []byte) (int, error) { return w.pw.Write(b) }

// Close ends the page and returns once it is stored.
func (w *pageWriter) Close() error {
	_ = w.pw.Close()
	return <-w.done
}

// Abort makes the upload fail with cause, so nothing is stored.
func (w *pageWriter) Abort(cause error) {
	_ = w.pw.CloseWithError(cause)
	<-w.done
}
