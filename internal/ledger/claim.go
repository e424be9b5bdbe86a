package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/qfetch/qfetch/internal/objstore"
)

// A batch's claim is the key <run>.claim.<batch> in QFETCH_RUNS: which copy
// of the batch message holds it, the uploads that copy began, and how the
// batch ended (done or split). Every change is a compare-and-set on the
// claim's revision, so of two copies racing (a redelivery while the first
// copy is frozen or partitioned) exactly one holds the batch, and the one
// that takes it over first aborts every upload its predecessor recorded:
// the store then refuses to complete them (objstore.Upload). A late copy
// therefore can neither land an object nor a record (design.md I8).
//
// The <run>.done.<batch> and <run>.split.<batch> records stay what the
// finisher and status read; they are written only after the claim says
// done or split, with the claim's content, so writing them again is
// harmless.

// Copy names one delivery of a batch message. A copy with a later stream
// sequence, or the same sequence and a higher delivery count, is newer: a
// retry is re-published (a new sequence) and a redelivery counts up.
type Copy struct {
	Worker   string `json:"worker"`
	Seq      uint64 `json:"seq"`      // the message's stream sequence
	Delivery uint64 `json:"delivery"` // its delivery count
}

// Newer reports whether c is a later copy than o.
func (c Copy) Newer(o Copy) bool {
	if c.Seq != o.Seq {
		return c.Seq > o.Seq
	}
	return c.Delivery > o.Delivery
}

// ClaimState is where a batch is in its life.
type ClaimState string

// Claim states. Done and split are final: nobody changes the claim again.
const (
	ClaimFetching ClaimState = "fetching"
	ClaimDone     ClaimState = "done"
	ClaimSplit    ClaimState = "split"
)

// Claim is the value of <run>.claim.<batch>.
type Claim struct {
	Run    string     `json:"run"`
	Batch  string     `json:"batch"` // Batch.Key()
	State  ClaimState `json:"state"`
	Holder Copy       `json:"holder"`
	// Uploads are the uploads the holder began, open or completed; whoever
	// takes the batch over aborts them all first.
	Uploads []objstore.Upload `json:"uploads,omitempty"`
	Result  *BatchResult      `json:"result,omitempty"` // when done
	Split   *Split            `json:"split,omitempty"`  // when split
	Taken   time.Time         `json:"taken"`
}

// Claim errors, tested with errors.Is.
var (
	// ErrSuperseded: a newer copy holds the batch (or took it over from
	// this one). The copy must stop and leave the message alone: neither
	// ack nor nak, which would act on the newer copy's delivery.
	ErrSuperseded = errors.New("batch taken over by a newer copy")
	// ErrBatchDone: the batch is done; its done record is in place. The
	// copy acks without a call.
	ErrBatchDone = errors.New("batch already done")
	// ErrBatchSplit: the batch was split; its split record is in place.
	// The copy acks without a call.
	ErrBatchSplit = errors.New("batch already split")
)

var errClaimTODO = errors.New("ledger: claims not implemented yet")

// Held is a claim this copy holds. Each of its writes is a compare-and-set
// on the revision it last wrote: any other write to the claim is a takeover,
// so a mismatch is ErrSuperseded. Not safe for concurrent use.
type Held struct {
	l     *Ledger
	claim Claim
	rev   uint64
}

// TakeBatch makes me the holder of run's batch. It aborts (with abort) every
// upload the claim records before it writes, and again on every retry of
// its compare-and-set, so that no upload of an earlier holder can complete
// once it holds the claim. first, if its Key is set, is registered with the
// claim in the same write. Errors wrap ErrBatchDone, ErrBatchSplit (with
// their records rewritten) or ErrSuperseded (a newer copy holds it); the
// same copy taking it again keeps it. An abort that fails stops the take
// (its error, retryable): the predecessor might still land.
func (l *Ledger) TakeBatch(ctx context.Context, run, batch string, me Copy, first objstore.Upload,
	abort func(context.Context, objstore.Upload) error) (*Held, error) {
	return nil, errClaimTODO
}

// Claim returns the claim as this copy last wrote it.
func (h *Held) Claim() Claim { return h.claim }

// AddUpload registers u before anything is streamed into it; ErrSuperseded
// when the batch was taken over (then u must be aborted by the caller).
func (h *Held) AddUpload(ctx context.Context, u objstore.Upload) error { return errClaimTODO }

// Done makes the claim done with r, then writes r as the batch's done
// record (MarkDone); ErrSuperseded when the batch was taken over.
func (h *Held) Done(ctx context.Context, r BatchResult) error { return errClaimTODO }

// Split makes the claim split with s, then writes the split record
// (MarkSplit); ErrSuperseded when the batch was taken over.
func (h *Held) Split(ctx context.Context, s Split) error { return errClaimTODO }

// GetClaim returns run's claim of batch; ok is false when there is none.
func (l *Ledger) GetClaim(ctx context.Context, run, batch string) (c Claim, ok bool, err error) {
	return Claim{}, false, errClaimTODO
}

// DoneEmpty records batch of run done with no objects, on behalf of by,
// unless some copy claimed it already (that copy, or a later one, finishes
// it): the planner's batch whose hosts all left the window.
func (l *Ledger) DoneEmpty(ctx context.Context, run, batch, by string) error { return errClaimTODO }

// MarkDrained records that a queued batch of a failed or dropped run was
// acknowledged without a call (<run>.drained.<batch>); CountDrained counts
// them.
func (l *Ledger) MarkDrained(ctx context.Context, run, batch string) error { return errClaimTODO }

// CountDrained returns how many of run's batches were drained.
func (l *Ledger) CountDrained(ctx context.Context, run string) (int, error) { return 0, errClaimTODO }
