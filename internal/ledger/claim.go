package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
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

// Held is a claim this copy holds. Each of its writes is a compare-and-set
// on the revision it last wrote: any other write to the claim is a takeover,
// so a mismatch is ErrSuperseded. Not safe for concurrent use.
type Held struct {
	l     *Ledger
	key   string
	claim Claim
	rev   uint64
}

func claimKey(run, batch string) (string, error) {
	if _, err := doneKey(run, batch); err != nil {
		return "", err
	}
	return run + ".claim." + batch, nil
}

// TakeBatch makes me the holder of run's batch. It aborts (with abort) every
// upload the claim records before it writes, and again on every retry of
// its compare-and-set, so that no upload of an earlier holder can complete
// once it holds the claim. first, if its Key is set, is registered with the
// claim in the same write. Errors wrap ErrBatchDone, ErrBatchSplit (with
// their records rewritten) or ErrSuperseded (a newer copy holds it); the
// same copy taking it again keeps it (registering first unless it is
// there). An abort that fails stops the take, its error wrapped with its
// class: the predecessor might still land.
//
// A claim value that does not decode, or that names another run or batch,
// is taken over like an absent one, by compare-and-set on its revision,
// after aborting the uploads that can still be read from it. Only uploads
// in run's prefix are ever aborted.
func (l *Ledger) TakeBatch(ctx context.Context, run, batch string, me Copy, first objstore.Upload,
	abort func(context.Context, objstore.Upload) error) (*Held, error) {
	key, err := claimKey(run, batch)
	if err != nil {
		return nil, err
	}
	taken := Claim{Run: run, Batch: batch, State: ClaimFetching, Holder: me}
	if first.Key != "" {
		taken.Uploads = []objstore.Upload{first}
	}
	for attempt := 1; ; attempt++ {
		cur, rev, err := l.readClaim(ctx, key)
		var garbled *garbledClaimError
		if errors.As(err, &garbled) {
			cur, rev, err = Claim{Uploads: garbled.uploads}, garbled.rev, nil
		}
		if err != nil {
			return nil, err
		}
		if !cur.about(run, batch) {
			// Not this batch's claim as any copy writes it (forged, or
			// garbled by hand): taken over like a garbled one, its
			// records never written for it.
			cur = Claim{Uploads: cur.Uploads}
		}
		if err := l.settled(ctx, key, run, cur); err != nil {
			return nil, err
		}
		var h *Held
		switch {
		case cur.State != "" && cur.Holder.Newer(me):
			return nil, fmt.Errorf("ledger: take %s as %s: %w", key, me, ErrSuperseded)
		case cur.State != "" && cur.Holder == me:
			h = &Held{l: l, key: key, claim: cur, rev: rev}
			if first.Key != "" && !slices.Contains(cur.Uploads, first) {
				err = h.AddUpload(ctx, first)
			}
		default:
			for _, u := range runUploads(run, cur.Uploads) {
				if err := abort(ctx, u); err != nil {
					return nil, fmt.Errorf("ledger: take %s: abort upload %s of %s: %w", key, u.Key, cur.Holder, err)
				}
			}
			taken.Taken = time.Now().UTC()
			h, err = l.writeTake(ctx, key, taken, rev)
		}
		// ErrSuperseded from AddUpload: written since the read; reading
		// again says by whom.
		if !errors.Is(err, errContended) && !errors.Is(err, ErrSuperseded) {
			if err != nil {
				return nil, err
			}
			return h, nil
		}
		if attempt == maxCASAttempts {
			return nil, failure.Retryable(fmt.Errorf("ledger: take %s: still contended after %d attempts", key, attempt))
		}
		if err := casPause(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// errContended: a compare-and-set found the key written since it was read.
var errContended = errors.New("written meanwhile")

// writeTake writes a taken claim over revision rev (0: absent), or fails
// wrapping errContended.
func (l *Ledger) writeTake(ctx context.Context, key string, c Claim, rev uint64) (*Held, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	rev, err = l.writeAt(ctx, key, data, rev)
	switch {
	case err == nil:
		return &Held{l: l, key: key, claim: c, rev: rev}, nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return nil, fmt.Errorf("ledger: take %s: %w", key, errContended)
	default:
		return nil, msg.ClassifyAPI(fmt.Errorf("ledger: take %s: %w", key, err))
	}
}

// settled rewrites the record of a final claim and returns the error that
// says so (nil while the claim is fetching): the copy that made it final may
// have died between the claim and the record.
func (l *Ledger) settled(ctx context.Context, key, run string, c Claim) error {
	switch c.State {
	case "", ClaimFetching: // "": absent or garbled
		return nil
	case ClaimDone:
		if c.Result == nil {
			return failure.Permanent(fmt.Errorf("ledger: claim %s is done without a result", key))
		}
		if err := l.MarkDone(ctx, *c.Result); err != nil {
			return err
		}
		return fmt.Errorf("ledger: %s: %w", key, ErrBatchDone)
	case ClaimSplit:
		if c.Split == nil {
			return failure.Permanent(fmt.Errorf("ledger: claim %s is split without a split record", key))
		}
		if err := l.MarkSplit(ctx, run, *c.Split); err != nil {
			return err
		}
		return fmt.Errorf("ledger: %s: %w", key, ErrBatchSplit)
	default:
		return failure.Permanent(fmt.Errorf("ledger: claim %s is in unknown state %q", key, c.State))
	}
}

// about reports whether c is a claim of run's batch as copies write them:
// absent, or naming that batch, with a final state's record naming it too.
// A record naming another run or batch must not be written for this one.
func (c Claim) about(run, batch string) bool {
	if c.State == "" {
		return true
	}
	if c.Run != run || c.Batch != batch {
		return false
	}
	switch c.State {
	case ClaimDone:
		return c.Result != nil && c.Result.Run == run && c.Result.Batch == batch
	case ClaimSplit:
		return c.Split != nil && c.Split.Batch == batch
	}
	return true
}

// runUploads keeps the uploads whose keys lie in run's prefix: only those
// can be a copy's of this run, and aborting another run's on the word of a
// forged claim would stop copies that did nothing wrong.
func runUploads(run string, us []objstore.Upload) []objstore.Upload {
	dir := objstore.RunPrefix("", run)
	var out []objstore.Upload
	for _, u := range us {
		if strings.HasPrefix(u.Key, dir) || strings.Contains(u.Key, "/"+dir) {
			out = append(out, u)
		}
	}
	return out
}

// garbledClaimError is readClaim's error for a value that does not decode;
// uploads are those that could still be read from it.
type garbledClaimError struct {
	key     string
	rev     uint64
	err     error
	uploads []objstore.Upload
}

func (e *garbledClaimError) Error() string {
	return fmt.Sprintf("ledger: claim %s is garbled: %v", e.key, e.err)
}

func (e *garbledClaimError) Unwrap() error { return e.err }

// readClaim reads the claim at key and its revision (0 when absent).
func (l *Ledger) readClaim(ctx context.Context, key string) (Claim, uint64, error) {
	e, err := l.runs.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Claim{}, 0, nil
	}
	if err != nil {
		return Claim{}, 0, msg.ClassifyAPI(fmt.Errorf("ledger: read %s: %w", key, err))
	}
	var c Claim
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return Claim{}, e.Revision(), failure.Permanent(&garbledClaimError{key: key, rev: e.Revision(), err: err,
			uploads: salvageUploads(e.Value())})
	}
	return c, e.Revision(), nil
}

// String names c in errors and logs.
func (c Copy) String() string {
	return fmt.Sprintf("%s (seq %d, delivery %d)", c.Worker, c.Seq, c.Delivery)
}

// Claim returns the claim as this copy last wrote it.
func (h *Held) Claim() Claim { return h.claim }

// AddUpload registers u before anything is streamed into it; ErrSuperseded
// when the batch was taken over (then u must be aborted by the caller).
func (h *Held) AddUpload(ctx context.Context, u objstore.Upload) error {
	next := h.claim
	next.Uploads = append(slices.Clone(h.claim.Uploads), u)
	return h.write(ctx, next)
}

// Done makes the claim done with r, then writes r as the batch's done
// record (MarkDone); ErrSuperseded when the batch was taken over. The claim
// is final once written: if the record's write fails, the next copy's
// TakeBatch writes it (and returns ErrBatchDone).
func (h *Held) Done(ctx context.Context, r BatchResult) error {
	if r.Run != h.claim.Run || r.Batch != h.claim.Batch {
		return failure.Permanent(fmt.Errorf("ledger: claim %s: result of %s.%s", h.key, r.Run, r.Batch))
	}
	next := h.claim
	next.State, next.Result, next.Uploads = ClaimDone, &r, nil
	if err := h.write(ctx, next); err != nil {
		return err
	}
	return h.l.MarkDone(ctx, r)
}

// Split makes the claim split with s, then writes the split record
// (MarkSplit); ErrSuperseded when the batch was taken over. As with Done,
// the next copy writes the record if this write fails.
func (h *Held) Split(ctx context.Context, s Split) error {
	if s.Batch != h.claim.Batch {
		return failure.Permanent(fmt.Errorf("ledger: claim %s: split of %s", h.key, s.Batch))
	}
	next := h.claim
	next.State, next.Split = ClaimSplit, &s
	if err := h.write(ctx, next); err != nil {
		return err
	}
	return h.l.MarkSplit(ctx, h.claim.Run, s)
}

// write replaces the claim with next by compare-and-set on the revision
// this copy last wrote. Only a takeover writes a held claim, so any
// mismatch means this copy lost it.
func (h *Held) write(ctx context.Context, next Claim) error {
	if h.claim.State != ClaimFetching {
		return failure.Permanent(fmt.Errorf("ledger: claim %s is %s already: a final claim is never written again", h.key, h.claim.State))
	}
	data, err := json.Marshal(next)
	if err != nil {
		return err
	}
	rev, err := h.l.runs.Update(ctx, h.key, data, h.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("ledger: write %s as %s: %w", h.key, h.claim.Holder, ErrSuperseded)
	}
	if err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: write %s: %w", h.key, err))
	}
	h.claim, h.rev = next, rev
	return nil
}

// GetClaim returns run's claim of batch; ok is false when there is none. A
// value that does not decode is a permanent error here (TakeBatch takes it
// over).
func (l *Ledger) GetClaim(ctx context.Context, run, batch string) (c Claim, ok bool, err error) {
	key, err := claimKey(run, batch)
	if err != nil {
		return Claim{}, false, err
	}
	c, rev, err := l.readClaim(ctx, key)
	if err != nil {
		return Claim{}, false, err
	}
	return c, rev != 0, nil
}

// DoneEmpty records batch of run done with no objects, on behalf of by,
// unless some copy claimed it already (that copy, or a later one, finishes
// it): the planner's batch whose hosts all left the window.
func (l *Ledger) DoneEmpty(ctx context.Context, run, batch, by string) error {
	key, err := claimKey(run, batch)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	r := BatchResult{Run: run, Batch: batch, Worker: by, At: now}
	data, err := json.Marshal(Claim{Run: run, Batch: batch, State: ClaimDone, Holder: Copy{Worker: by}, Result: &r, Taken: now})
	if err != nil {
		return err
	}
	_, err = l.runs.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return nil
	}
	if err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: record %s done empty: %w", key, err))
	}
	return l.MarkDone(ctx, r)
}

// MarkDrained records that a queued batch of a failed or dropped run was
// acknowledged without a call (<run>.drained.<batch>); CountDrained counts
// them.
func (l *Ledger) MarkDrained(ctx context.Context, run, batch string) error {
	if _, err := doneKey(run, batch); err != nil {
		return err
	}
	key := run + ".drained." + batch
	if _, err := l.runs.Put(ctx, key, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: record %s: %w", key, err))
	}
	return nil
}

// CountDrained returns how many of run's batches were drained.
func (l *Ledger) CountDrained(ctx context.Context, run string) (int, error) {
	return l.countKeys(ctx, run, "drained")
}

// salvageUploads reads what uploads it can from a claim value that does not
// decode as a whole (a field of another type: a newer version's claim in a
// rolling upgrade), so that taking it over still aborts them.
func salvageUploads(value []byte) []objstore.Upload {
	var loose struct {
		Uploads []json.RawMessage `json:"uploads"`
	}
	if json.Unmarshal(value, &loose) != nil {
		return nil
	}
	var out []objstore.Upload
	for _, raw := range loose.Uploads {
		var u objstore.Upload
		if json.Unmarshal(raw, &u) == nil && u.Key != "" && u.ID != "" {
			out = append(out, u)
		}
	}
	return out
}
