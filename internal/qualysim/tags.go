package qualysim

import "strconv"

// Tags: with show_tags=1 both APIs add a HOST's TAGS (qualys-api.md §2.2,
// §3.3: TAG (TAG_ID?, NAME, COLOR?, BACKGROUND_COLOR?); the simulator
// writes TAG_ID and NAME, the two the tables read). A host carries 0
// to 3 tags of one subscription-wide catalogue, drawn from (seed, host) and
// fixed for the host's life, so the same tag (ID and name) recurs across
// hosts as real tags do. A host without a tag has no TAGS element (the DTD
// wants TAG+). Asset group IDs come with details=All (allAttrs).

// sTags is the tags' hash stream, apart from model.go's, so that adding
// tags shifts no other property.
const sTags uint64 = 0x7461_6773

// Tag is one HOST/TAGS/TAG: TAG_ID and NAME.
type Tag struct {
	ID   uint64 `xml:"TAG_ID"`
	Name string `xml:"NAME"`
}

// tagCatalogue is the subscription's tags, in the order a host lists
// them. Names are free text in CDATA: one has an ampersand and angle
// brackets, one an &lt;-style entity that CDATA keeps as written.
var tagCatalogue = [...]string{
	"Cloud Agent",
	"Internet Facing Assets",
	"Business Units: R&D <Lab>",
	"PCI Scope",
	"Windows Servers",
	"Linux Servers",
	"Owner &amp; Team: SecOps",
	"Critical Assets",
	"DMZ",
	"Datacenter EU-West",
	"Decommission Candidates",
	"Test/Dev",
}

// tagID is catalogue entry k's TAG_ID: large numbers, as Qualys' are.
func tagID(k int) uint64 { return 12_740_000 + uint64(k)*7919 }

// tagSet is host h's tags as catalogue indices, ascending; n of them.
type tagSet struct {
	k [3]int
	n int
}

func (s *Sim) tagSet(h hostRef) tagSet {
	g := s.m.h(sTags, uint64(h.i))
	n := uint64(len(tagCatalogue))
	// A stride coprime with the catalogue's size visits distinct entries.
	strides := [...]uint64{1, 5, 7, 11}
	start, stride := (g>>2)%n, strides[(g>>8)%uint64(len(strides))]
	var used [len(tagCatalogue)]bool
	for j := range g % 4 { // 0 to 3 tags
		used[(start+j*stride)%n] = true
	}
	var t tagSet
	for k, u := range used {
		if u {
			t.k[t.n] = k
			t.n++
		}
	}
	return t
}

// hostTags is host h's tags for the truth; nil when it has none.
func (s *Sim) hostTags(h hostRef) []Tag {
	t := s.tagSet(h)
	if t.n == 0 {
		return nil
	}
	out := make([]Tag, t.n)
	for i, k := range t.k[:t.n] {
		out[i] = Tag{ID: tagID(k), Name: tagCatalogue[k]}
	}
	return out
}

// writeTags writes host h's TAGS, if it has a tag.
func (s *Sim) writeTags(o *out, h hostRef) {
	t := s.tagSet(h)
	if t.n == 0 {
		return
	}
	o.s("        <TAGS>\n")
	for _, k := range t.k[:t.n] {
		o.s("          <TAG>\n            <TAG_ID>")
		o.buf = strconv.AppendUint(o.buf, tagID(k), 10)
		o.s("</TAG_ID>\n            <NAME><![CDATA[")
		o.s(tagCatalogue[k])
		o.s("]]></NAME>\n")
		o.s("          </TAG>\n")
	}
	o.s("        </TAGS>\n")
}
