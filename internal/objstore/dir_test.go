package objstore

import (
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
)

func setupDir(t *testing.T) subject {
	t.Helper()
	root := t.TempDir()
	d, err := NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	return subject{
		s:    d,
		part: copyBuf,
		leftovers: func(t *testing.T, _ string) []string {
			t.Helper()
			return tempFiles(t, root)
		},
	}
}

// tempFiles lists the store's temporary files anywhere under root.
func tempFiles(t *testing.T, root string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return found
}

// The leftover check of the suite must be able to fail.
func TestDirLeftoversSeesTempFiles(t *testing.T) {
	sub := setupDir(t)
	root := strings.TrimPrefix(sub.s.Describe(), "dir:")
	if err := os.WriteFile(filepath.Join(root, tmpPrefix+"crashed"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if left := sub.leftovers(t, "any"); len(left) != 1 {
		t.Fatalf("leftovers = %v, want the one temporary file", left)
	}
	// …and List does not show it.
	for o, err := range sub.s.List(context.Background(), "") {
		t.Errorf("List yielded %+v, %v; want nothing", o, err)
	}
}

func TestDirCheck(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{filepath.Join(base, "missing"), file} {
		d, err := NewDir(root)
		if err != nil {
			t.Fatal(err)
		}
		err = d.Check(context.Background())
		if failure.ClassOf(err) != failure.ClassFleetWide || !strings.Contains(err.Error(), root) {
			t.Errorf("Check(%s) = %v, want a fleet-wide error naming the directory", root, err)
		}
		_, err = d.Put(context.Background(), "k", strings.NewReader("x"), PutOptions{})
		if failure.ClassOf(err) != failure.ClassFleetWide {
			t.Errorf("Put under %s = %v, want fleet-wide", root, err)
		}
	}
	if _, err := NewDir(""); err == nil {
		t.Error("NewDir(\"\") succeeded")
	}
}

// A symbolic link inside the root cannot take a key outside it.
func TestDirStaysInsideRoot(t *testing.T) {
	base := t.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, dir := range []string{root, outside} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	d, err := NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := d.Put(ctx, "link/new", strings.NewReader("x"), PutOptions{}); err == nil {
		t.Error("Put through a link out of the root succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file appeared outside the root: %v", err)
	}
	if rc, err := d.Get(ctx, "link/secret"); err == nil {
		rc.Close()
		t.Error("Get through a link out of the root succeeded")
	}
}

// Unlike S3, a directory cannot hold both "a" and "a/b": the layout never
// asks for it, and the error says it will never work.
func TestDirKeyCollision(t *testing.T) {
	d := setupDir(t).s
	ctx := context.Background()
	if _, err := d.Put(ctx, "a", strings.NewReader("x"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := d.Put(ctx, "a/b", strings.NewReader("x"), PutOptions{})
	if failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("Put(a/b) over object a = %v, want permanent", err)
	}
	if _, err := d.Stat(ctx, "a/b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat(a/b) = %v, want ErrNotFound", err)
	}
}

// An upload ID comes from a KV record: one that Begin did not make names no
// file, so that a forged or damaged record cannot remove or replace one.
func TestDirForgedUploadID(t *testing.T) {
	sub := setupDir(t)
	d := sub.s
	ctx := context.Background()
	root := strings.TrimPrefix(d.Describe(), "dir:")
	for _, key := range []string{"q/x", "q/a/x"} {
		if _, err := d.Put(ctx, key, strings.NewReader("keep"), PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	open, err := d.Begin(ctx, "q/a/k", PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"", "../x", "x", "a/b", "..", ".", uploadPrefix, uploadPrefix + "../../x",
		uploadPrefix + strings.ToLower(strings.TrimPrefix(open.ID, uploadPrefix)), open.ID + "/x", open.ID + "A",
		"../a/" + open.ID, tmpPrefix + strings.TrimPrefix(open.ID, uploadPrefix)}
	for _, id := range ids {
		u := Upload{Key: "q/a/k", ID: id}
		if err := d.Abort(ctx, u); failure.ClassOf(err) != failure.ClassPermanent {
			t.Errorf("Abort(%q) = %v, want permanent", id, err)
		}
		if _, err := d.Complete(ctx, u, strings.NewReader("forged")); failure.ClassOf(err) != failure.ClassPermanent {
			t.Errorf("Complete(%q) = %v, want permanent", id, err)
		}
	}
	for _, key := range []string{"q/x", "q/a/x"} {
		if b, err := os.ReadFile(filepath.Join(root, key)); err != nil || string(b) != "keep" {
			t.Errorf("%s = %q, %v; want it untouched", key, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "q/a", open.ID)); err != nil {
		t.Errorf("the open upload's file: %v", err)
	}
	if _, err := d.Stat(ctx, "q/a/k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat(q/a/k) = %v, want ErrNotFound", err)
	}
	// The real ID still works.
	if _, err := d.Complete(ctx, open, strings.NewReader("mine")); err != nil {
		t.Fatalf("Complete of the open upload: %v", err)
	}
}

// IfAbsent over a directory is the old collision, not ErrExists.
func TestDirIfAbsentOverDirectory(t *testing.T) {
	d := setupDir(t).s
	ctx := context.Background()
	if _, err := d.Put(ctx, "a/b", strings.NewReader("x"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := d.Put(ctx, "a", strings.NewReader("x"), PutOptions{IfAbsent: true})
	if errors.Is(err, ErrExists) || failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("Put(a) IfAbsent over directory a = %v, want a permanent collision", err)
	}
}

// A key under another object's name is the old collision for uploads too.
func TestDirUploadKeyCollision(t *testing.T) {
	d := setupDir(t).s
	ctx := context.Background()
	if _, err := d.Put(ctx, "a", strings.NewReader("x"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Begin(ctx, "a/b", PutOptions{}); failure.ClassOf(err) != failure.ClassPermanent || errors.Is(err, ErrNotFound) {
		t.Errorf("Begin(a/b) over object a = %v, want a permanent collision", err)
	}
	if _, err := d.Complete(ctx, Upload{Key: "a/b", ID: uploadPrefix + rand.Text()}, strings.NewReader("x")); !errors.Is(err, ErrUploadGone) {
		t.Errorf("Complete(a/b) over object a = %v, want ErrUploadGone (no such upload)", err)
	}
}
