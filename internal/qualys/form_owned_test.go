package qualys

import (
	"net/url"
	"testing"
)

// TestFormDropsOwnedAnyCase: an extra parameter qfetch owns is dropped in
// whatever case it comes, so that Action=purge or IDS=… never reaches
// Qualys beside the ones qfetch sets.
func TestFormDropsOwnedAnyCase(t *testing.T) {
	q := DetectionQuery{IDs: []uint64{5, 6}, Extra: url.Values{
		"Action": {"purge"}, "IDS": {"1-999999999"}, "Truncation_Limit": {"1"}, "OUTPUT_FORMAT": {"CSV"},
		"show_igs": {"1"},
	}}
	got := q.Form()
	want := url.Values{"action": {"list"}, "ids": {"5,6"}, "truncation_limit": {"0"}, "output_format": {"XML"},
		"show_igs": {"1"}, "status": {"New,Active,Re-Opened,Fixed"}, "show_reopened_info": {"1"}}
	if got.Encode() != want.Encode() {
		t.Fatalf("form %s\nwant %s", got.Encode(), want.Encode())
	}
}

// TestHostPagerDropsOwnedAnyCase: the Host List form drops the owned names
// of the operator's extras in any case, as the detection form does.
func TestHostPagerDropsOwnedAnyCase(t *testing.T) {
	c, err := New(Config{BaseURL: "https://qualysapi.example", Username: "u", Password: "password1"})
	if err != nil {
		t.Fatal(err)
	}
	p := c.HostPager(HostListQuery{PageSize: 7, Extra: url.Values{
		"Action": {"purge"}, "IDS": {"1-999999999"}, "ID_MIN": {"1"}, "Details": {"All"}, "use_tags": {"1"},
	}}, nil)
	// Without Details, Basic: the default since #20 (the hosts table needs
	// the host fields), and what Qualys answers when details is not sent.
	want := url.Values{"action": {"list"}, "details": {"Basic"}, "truncation_limit": {"7"}, "use_tags": {"1"}}
	if p.form.Encode() != want.Encode() {
		t.Fatalf("form %s\nwant %s", p.form.Encode(), want.Encode())
	}
}

// TestHostPagerSendsDetails: the configured detail level is sent, and an
// operator's extra cannot change it.
func TestHostPagerSendsDetails(t *testing.T) {
	c, err := New(Config{BaseURL: "https://qualysapi.example", Username: "u", Password: "password1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range HostListDetails {
		p := c.HostPager(HostListQuery{Details: d, Extra: url.Values{"details": {"Basic/AGs"}}}, nil)
		if got := p.form["details"]; len(got) != 1 || got[0] != d {
			t.Errorf("Details %s: form details %q", d, got)
		}
	}
}
