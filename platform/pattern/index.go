package pattern

import (
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
)

// index is an immutable matching structure over a set of rules.
//
// Every conjunction (a rule branch after $or expansion) picks one "anchor"
// field, the most selective one (exact values first, numeric ranges last),
// and only anchor values are indexed: per path, hash maps for exact values,
// maps per distinct length for prefixes and suffixes, a segment tree for
// numeric ranges, maps per prefix length for CIDR. An event's leaves probe
// those structures, so the work depends on the event and on how many anchors
// hit, not on how many rules exist. The other fields of a conjunction are
// checked only when its anchor hit (like event-ruler's automaton, which only
// reaches a rule's later fields through its earlier ones). Conjunctions made
// only of operators that match nearly everything (anything-but, exists) have
// no anchor and are checked for every event; they match most events anyway.
type index struct {
	root *tnode
	pidx []pathIdx

	// per field id
	fieldConj   []int32
	fieldPid    []int32
	fieldOps    [][]*op
	fieldAbsent []bool // has an {"exists": false} alternative

	conjs  []conjInfo
	always []int32 // conjunctions without an anchor
	names  []string

	pool sync.Pool
}

type conjInfo struct {
	rule   int32
	anchor int32   // field id, or -1
	fields []int32 // all field ids
}

type pathIdx struct {
	exactStr     map[string][]int32
	exactIP      map[netip.Addr][]int32
	exactLit     [3][]int32 // true, false, null
	exactNum     map[float64][]int32
	exactNumText map[string][]int32
	prefix       []lenGroup
	suffix       []lenGroup
	eqIC         map[string][]int32
	prefixIC     []lenGroup
	suffixIC     []lenGroup
	numeric      *segTree
	cidr         []cidrGroup
	wcOps        []scanOp   // wildcard ops, addressed by the groups below
	wcPrefix     []lenGroup // ids are positions in wcOps
	wcSuffix     []lenGroup
	wcScan       []int32 // wcOps positions with no literal start or end
	needLower    bool
}

type lenGroup struct {
	n int
	m map[string][]int32
}

type cidrGroup struct {
	bits int
	is4  bool
	m    map[netip.Addr][]int32
}

type scanOp struct {
	fid int32
	op  *op
}

type ruleEntry struct {
	name string
	p    *Pattern
}

func litSlot(k byte) int {
	switch k {
	case 't':
		return 0
	case 'f':
		return 1
	}
	return 2
}

// anchorCost ranks how selective a field is as an index entry point; -1
// means it cannot be one (it matches nearly every value).
func anchorCost(f *field) int {
	if f.absentOK || len(f.ops) == 0 {
		return -1
	}
	worst := 0
	for _, o := range f.ops {
		c := 0
		switch o.kind {
		case opExactStr, opExactNum, opExactLit:
			c = 0
		case opEqualsIC:
			c = 1
		case opPrefix, opSuffix, opPrefixIC, opSuffixIC:
			c = 2
		case opWildcard:
			c = 3
			if o.wc.literalPrefix() == "" && o.wc.literalSuffix() == "" {
				c = 6
			}
		case opCIDR:
			c = 4
		case opNumeric:
			c = 5
		default:
			return -1
		}
		worst = max(worst, c)
	}
	return worst
}

// anchorKeys names the index entries a field would occupy as an anchor.
func anchorKeys(f *field) []string {
	keys := make([]string, 0, len(f.ops))
	for _, o := range f.ops {
		switch o.kind {
		case opNumeric:
			keys = append(keys, f.path+"\x00n")
		case opCIDR:
			keys = append(keys, f.path+"\x00c"+o.prefix.String())
		case opWildcard:
			keys = append(keys, f.path+"\x00w"+o.wc.literalPrefix()+"\x00"+o.wc.literalSuffix())
		default:
			keys = append(keys, f.path+"\x00"+string(rune('a'+o.kind))+o.s+string(o.lit))
		}
	}
	return keys
}

// buildIndex indexes rules (sorted by name by the caller when it matters).
func buildIndex(rules []ruleEntry) *index {
	ix := &index{root: &tnode{}}
	type numRange struct {
		fid int32
		op  *op
	}
	numRanges := map[int32][]numRange{}
	pidOf := func(path string) int32 {
		n := ix.root
		for _, comp := range strings.Split(path, ".") {
			n = n.child(comp)
		}
		if !n.leaf {
			n.leaf = true
			n.pid = int32(len(ix.pidx))
			ix.pidx = append(ix.pidx, pathIdx{})
		}
		return n.pid
	}
	// How many fields share each indexed operand: among equally cheap
	// anchors, the one shared by the fewest rules wins (a rule on
	// detail-type AND toolname is anchored on the rarer of the two).
	shared := map[string]int{}
	for _, r := range rules {
		for _, c := range r.p.conjs {
			for i := range c.fields {
				for _, k := range anchorKeys(&c.fields[i]) {
					shared[k]++
				}
			}
		}
	}
	for ri, r := range rules {
		ix.names = append(ix.names, r.name)
		for _, c := range r.p.conjs {
			cid := int32(len(ix.conjs))
			ci := conjInfo{rule: int32(ri), anchor: -1}
			best, bestShare := -1, 0
			// Fields in path order: event-ruler walks a rule's fields sorted
			// by name, and {"exists": false} inside arrays of objects is
			// judged against the array elements chosen by the fields before
			// it in that order.
			order := make([]int, len(c.fields))
			for i := range order {
				order[i] = i
			}
			slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(c.fields[a].path, c.fields[b].path) })
			for _, i := range order {
				f := &c.fields[i]
				fid := int32(len(ix.fieldConj))
				pid := pidOf(f.path)
				ix.fieldConj = append(ix.fieldConj, cid)
				ix.fieldPid = append(ix.fieldPid, pid)
				ix.fieldOps = append(ix.fieldOps, f.ops)
				ix.fieldAbsent = append(ix.fieldAbsent, f.absentOK)
				ci.fields = append(ci.fields, fid)
				if cost := anchorCost(f); cost >= 0 {
					share := 0
					for _, k := range anchorKeys(f) {
						share += shared[k]
					}
					if best < 0 || cost < best || (cost == best && share < bestShare) {
						best, bestShare, ci.anchor = cost, share, fid
					}
				}
			}
			if ci.anchor < 0 {
				ix.always = append(ix.always, cid)
			} else {
				fid := ci.anchor
				pid := ix.fieldPid[fid]
				pi := &ix.pidx[pid]
				for _, o := range ix.fieldOps[fid] {
					switch o.kind {
					case opExactStr:
						pi.exactStr = addMap(pi.exactStr, o.s, fid)
						if o.ip.IsValid() {
							if pi.exactIP == nil {
								pi.exactIP = map[netip.Addr][]int32{}
							}
							pi.exactIP[o.ip] = append(pi.exactIP[o.ip], fid)
						}
					case opExactLit:
						s := litSlot(o.lit)
						pi.exactLit[s] = append(pi.exactLit[s], fid)
					case opExactNum:
						pi.exactNumText = addMap(pi.exactNumText, o.s, fid)
						if o.numByVal {
							if pi.exactNum == nil {
								pi.exactNum = map[float64][]int32{}
							}
							pi.exactNum[o.num] = append(pi.exactNum[o.num], fid)
						}
					case opPrefix:
						pi.prefix = addLen(pi.prefix, o.s, fid)
					case opSuffix:
						pi.suffix = addLen(pi.suffix, o.s, fid)
					case opEqualsIC:
						pi.eqIC = addMap(pi.eqIC, o.s, fid)
						pi.needLower = true
					case opPrefixIC:
						pi.prefixIC = addLen(pi.prefixIC, o.s, fid)
						pi.needLower = true
					case opSuffixIC:
						pi.suffixIC = addLen(pi.suffixIC, o.s, fid)
						pi.needLower = true
					case opNumeric:
						numRanges[pid] = append(numRanges[pid], numRange{fid, o})
					case opCIDR:
						pi.cidr = addCIDR(pi.cidr, o.prefix, fid)
					case opWildcard:
						pi.wcOps = append(pi.wcOps, scanOp{fid, o})
					}
				}
			}
			ix.conjs = append(ix.conjs, ci)
		}
	}
	for pid, rs := range numRanges {
		t := &segTree{}
		for _, r := range rs {
			t.addPoint(r.op.lo)
			t.addPoint(r.op.hi)
		}
		t.prepare()
		for _, r := range rs {
			t.insert(r.op, r.fid)
		}
		ix.pidx[pid].numeric = t
	}
	for i := range ix.pidx {
		ix.pidx[i].indexWildcards()
	}
	ix.root.freeze()
	nc := len(ix.conjs)
	np := len(ix.pidx)
	nr := len(ix.names)
	ix.pool.New = func() any { return newScratch(nc, np, nr) }
	return ix
}

// indexWildcards keys each wildcard by its literal start or its literal
// end, whichever fewer wildcards at the path share (so a set of ARNs that all
// start "arn:aws:" is keyed by their distinct ends); wildcards with neither
// ("*x*") are tested one by one.
func (pi *pathIdx) indexWildcards() {
	pre, suf := map[string]int{}, map[string]int{}
	for _, w := range pi.wcOps {
		pre[w.op.wc.literalPrefix()]++
		suf[w.op.wc.literalSuffix()]++
	}
	for pos, w := range pi.wcOps {
		lp, ls := w.op.wc.literalPrefix(), w.op.wc.literalSuffix()
		switch {
		case lp != "" && (ls == "" || pre[lp] < suf[ls] || (pre[lp] == suf[ls] && len(lp) >= len(ls))):
			pi.wcPrefix = addLen(pi.wcPrefix, lp, int32(pos))
		case ls != "":
			pi.wcSuffix = addLen(pi.wcSuffix, ls, int32(pos))
		default:
			pi.wcScan = append(pi.wcScan, int32(pos))
		}
	}
}

func addMap(m map[string][]int32, k string, id int32) map[string][]int32 {
	if m == nil {
		m = map[string][]int32{}
	}
	m[k] = append(m[k], id)
	return m
}

func addLen(gs []lenGroup, s string, id int32) []lenGroup {
	for i := range gs {
		if gs[i].n == len(s) {
			gs[i].m[s] = append(gs[i].m[s], id)
			return gs
		}
	}
	gs = append(gs, lenGroup{n: len(s), m: map[string][]int32{s: {id}}})
	slices.SortFunc(gs, func(a, b lenGroup) int { return a.n - b.n })
	return gs
}

func addCIDR(gs []cidrGroup, p netip.Prefix, id int32) []cidrGroup {
	is4 := p.Addr().Is4()
	for i := range gs {
		if gs[i].bits == p.Bits() && gs[i].is4 == is4 {
			gs[i].m[p.Addr()] = append(gs[i].m[p.Addr()], id)
			return gs
		}
	}
	return append(gs, cidrGroup{bits: p.Bits(), is4: is4, m: map[netip.Addr][]int32{p.Addr(): {id}}})
}

// scratch is the per-call working memory of a match, pooled per index.
// Arrays indexed by conjunction, path and rule are "cleared" by bumping
// epoch.
type scratch struct {
	leaves  []leaf
	arr     []arrPos
	stack   []arrPos
	keyBuf  []byte
	nextArr int32

	epoch    uint32
	pathEp   []uint32
	pathHead []int32 // first leaf at a path (valid when pathEp == epoch)
	leafNext []int32
	conjEp   []uint32
	conjHead []int32 // anchor hits of a conjunction, chained through hits
	ruleSeen []uint32
	touched  []int32
	hits     []hitRec
	matched  []int32

	// consistency check
	cand   []int32 // candidate leaves, grouped per field
	bounds []bound
	chosen []int32
}

type hitRec struct {
	leaf int32
	next int32
}

func newScratch(nc, np, nr int) *scratch {
	return &scratch{
		pathEp:   make([]uint32, np),
		pathHead: make([]int32, np),
		conjEp:   make([]uint32, nc),
		conjHead: make([]int32, nc),
		ruleSeen: make([]uint32, nr),
	}
}

func (sc *scratch) reset() {
	sc.epoch++
	if sc.epoch == 0 { // wrapped: clear for real
		clear(sc.pathEp)
		clear(sc.conjEp)
		clear(sc.ruleSeen)
		sc.epoch = 1
	}
	sc.leaves = sc.leaves[:0]
	sc.arr = sc.arr[:0]
	sc.stack = sc.stack[:0]
	sc.nextArr = 0
	sc.touched = sc.touched[:0]
	sc.hits = sc.hits[:0]
	sc.matched = sc.matched[:0]
}

// match returns the names of the matching rules, sorted, appended to dst.
func (ix *index) match(event []byte, dst []string) ([]string, error) {
	sc := ix.pool.Get().(*scratch)
	defer ix.pool.Put(sc)
	sc.reset()
	if err := scanEvent(event, ix.root, sc); err != nil {
		return dst, err
	}
	ep := sc.epoch
	if cap(sc.leafNext) < len(sc.leaves) {
		sc.leafNext = make([]int32, len(sc.leaves), 2*len(sc.leaves))
	}
	sc.leafNext = sc.leafNext[:len(sc.leaves)]
	for li := len(sc.leaves) - 1; li >= 0; li-- {
		pid := sc.leaves[li].pid
		if sc.pathEp[pid] != ep {
			sc.pathEp[pid] = ep
			sc.pathHead[pid] = -1
		}
		sc.leafNext[li] = sc.pathHead[pid]
		sc.pathHead[pid] = int32(li)
	}
	for li := range sc.leaves {
		l := &sc.leaves[li]
		ix.pidx[l.pid].probe(ix, sc, l, int32(li))
	}
	for _, c := range sc.touched {
		ix.finish(sc, c)
	}
	for _, c := range ix.always {
		ix.finish(sc, c)
	}
	if len(sc.matched) == 0 {
		return dst, nil
	}
	slices.Sort(sc.matched)
	if dst == nil {
		dst = make([]string, 0, len(sc.matched))
	}
	for _, r := range sc.matched {
		dst = append(dst, ix.names[r])
	}
	return dst, nil
}

// hit records that leaf li satisfies the anchor field fid.
func (sc *scratch) hit(ix *index, fid, li int32) {
	c := ix.fieldConj[fid]
	if sc.conjEp[c] != sc.epoch {
		sc.conjEp[c] = sc.epoch
		sc.conjHead[c] = -1
		sc.touched = append(sc.touched, c)
	}
	sc.hits = append(sc.hits, hitRec{leaf: li, next: sc.conjHead[c]})
	sc.conjHead[c] = int32(len(sc.hits) - 1)
}

func (sc *scratch) hitAll(ix *index, fids []int32, li int32) {
	for _, f := range fids {
		sc.hit(ix, f, li)
	}
}

// finish decides a candidate conjunction: every field needs a matching leaf
// (or, with an {"exists": false} alternative, no leaf at its path), and the
// chosen leaves must be array-consistent. Fields are taken in path order.
func (ix *index) finish(sc *scratch, c int32) {
	ep := sc.epoch
	ci := &ix.conjs[c]
	if sc.ruleSeen[ci.rule] == ep {
		return
	}
	sc.cand = sc.cand[:0]
	sc.bounds = sc.bounds[:0]
	inArray := false
	needAbsence := false
	for _, fid := range ci.fields {
		absentOK := ix.fieldAbsent[fid]
		start := len(sc.cand)
		pid := ix.fieldPid[fid]
		if fid == ci.anchor {
			for h := sc.conjHead[c]; h >= 0; h = sc.hits[h].next {
				sc.cand = append(sc.cand, sc.hits[h].leaf)
			}
		} else {
			if sc.pathEp[pid] != ep {
				if absentOK {
					continue // absent, as {"exists": false} asks: no constraint
				}
				return
			}
			ops := ix.fieldOps[fid]
			for li := sc.pathHead[pid]; li >= 0; li = sc.leafNext[li] {
				l := &sc.leaves[li]
				if l.arrLen > 0 {
					inArray = true
				}
				for _, o := range ops {
					if o.match(l) {
						sc.cand = append(sc.cand, li)
						break
					}
				}
			}
		}
		if len(sc.cand) == start {
			if !absentOK {
				return
			}
			needAbsence = true // only an array element without the field can satisfy it
		}
		for _, li := range sc.cand[start:] {
			if sc.leaves[li].arrLen > 0 {
				inArray = true
				break
			}
		}
		sc.bounds = append(sc.bounds, bound{end: int32(len(sc.cand)), pid: pid, absentOK: absentOK})
	}
	if needAbsence && !inArray {
		return // the field is present and no alternative matched
	}
	if inArray && (len(sc.bounds) > 1 || (len(sc.bounds) == 1 && sc.bounds[0].absentOK)) {
		sc.chosen = sc.chosen[:0]
		if !sc.choose(0, 0) {
			return
		}
	}
	sc.ruleSeen[ci.rule] = ep
	sc.matched = append(sc.matched, ci.rule)
}

// bound closes one field's run of candidates in scratch.cand.
type bound struct {
	end      int32
	pid      int32
	absentOK bool // an {"exists": false} alternative; the path has leaves
}

// choose reports whether one candidate leaf can be picked for every field
// (from field k on, whose candidates start at offset from) so that no two
// picked leaves sit in different elements of the same array: event-ruler's
// "array consistency", under which fields matched inside an array of objects
// must come from one element. A field with an {"exists": false} alternative
// may instead pick nothing when none of its path's leaves is consistent with
// the leaves picked for the fields before it (the element chosen has no such
// field), which is how event-ruler answers.
func (sc *scratch) choose(k int, from int32) bool {
	if k == len(sc.bounds) {
		return true
	}
	b := sc.bounds[k]
	for _, li := range sc.cand[from:b.end] {
		if !sc.fits(li) {
			continue
		}
		sc.chosen = append(sc.chosen, li)
		if sc.choose(k+1, b.end) {
			return true
		}
		sc.chosen = sc.chosen[:len(sc.chosen)-1]
	}
	if b.absentOK {
		for li := sc.pathHead[b.pid]; li >= 0; li = sc.leafNext[li] {
			if sc.fits(li) {
				return false // a consistent leaf exists, so the field is present
			}
		}
		return sc.choose(k+1, b.end)
	}
	return false
}

// fits reports whether leaf li is consistent with every leaf chosen so far.
func (sc *scratch) fits(li int32) bool {
	for _, other := range sc.chosen {
		if !sc.compatible(li, other) {
			return false
		}
	}
	return true
}

func (sc *scratch) compatible(a, b int32) bool {
	la, lb := &sc.leaves[a], &sc.leaves[b]
	n := min(la.arrLen, lb.arrLen)
	pa := sc.arr[la.arrOff : la.arrOff+la.arrLen]
	pb := sc.arr[lb.arrOff : lb.arrOff+lb.arrLen]
	for i := int32(0); i < n; i++ {
		if pa[i].id != pb[i].id {
			return true
		}
		if pa[i].idx != pb[i].idx {
			return false
		}
	}
	return true
}

// probe finds every anchor field at this path that the leaf satisfies.
func (pi *pathIdx) probe(ix *index, sc *scratch, l *leaf, li int32) {
	switch l.kind {
	case 's':
		v := bstr(l.val)
		if pi.exactStr != nil {
			sc.hitAll(ix, pi.exactStr[v], li)
		}
		for _, g := range pi.prefix {
			if len(v) < g.n {
				break
			}
			sc.hitAll(ix, g.m[v[:g.n]], li)
		}
		for _, g := range pi.suffix {
			if len(v) < g.n {
				break
			}
			sc.hitAll(ix, g.m[v[len(v)-g.n:]], li)
		}
		if pi.needLower {
			lv := bstr(l.lowered())
			if pi.eqIC != nil {
				sc.hitAll(ix, pi.eqIC[lv], li)
			}
			for _, g := range pi.prefixIC {
				if len(lv) < g.n {
					break
				}
				sc.hitAll(ix, g.m[lv[:g.n]], li)
			}
			for _, g := range pi.suffixIC {
				if len(lv) < g.n {
					break
				}
				sc.hitAll(ix, g.m[lv[len(lv)-g.n:]], li)
			}
		}
		if len(pi.wcOps) > 0 {
			for _, g := range pi.wcPrefix {
				if len(v) < g.n {
					break
				}
				for _, pos := range g.m[v[:g.n]] {
					if w := pi.wcOps[pos]; w.op.wc.match(v) {
						sc.hit(ix, w.fid, li)
					}
				}
			}
			for _, g := range pi.wcSuffix {
				if len(v) < g.n {
					break
				}
				for _, pos := range g.m[v[len(v)-g.n:]] {
					if w := pi.wcOps[pos]; w.op.wc.match(v) {
						sc.hit(ix, w.fid, li)
					}
				}
			}
			for _, pos := range pi.wcScan {
				if w := pi.wcOps[pos]; w.op.wc.match(v) {
					sc.hit(ix, w.fid, li)
				}
			}
		}
		if (len(pi.cidr) > 0 || pi.exactIP != nil) && looksLikeIP(v) {
			if a, err := netip.ParseAddr(v); err == nil && a.Zone() == "" {
				// the same address, possibly written differently (a repeat
				// of an exact hit is harmless)
				sc.hitAll(ix, pi.exactIP[a], li)
				for _, g := range pi.cidr {
					if g.is4 != a.Is4() {
						continue
					}
					p, err := a.Prefix(g.bits)
					if err == nil {
						sc.hitAll(ix, g.m[p.Addr()], li)
					}
				}
			}
		}
	case 'n':
		if pi.exactNumText != nil {
			sc.hitAll(ix, pi.exactNumText[bstr(l.val)], li)
		}
		if pi.exactNum != nil || pi.numeric != nil {
			if f, ok := l.number(); ok {
				if pi.exactNum != nil && math.Abs(f) <= numLimit {
					for _, fid := range pi.exactNum[f] {
						sc.hit(ix, fid, li)
					}
				}
				if pi.numeric != nil {
					pi.numeric.query(f, func(fid int32) { sc.hit(ix, fid, li) })
				}
			}
		}
	default:
		sc.hitAll(ix, pi.exactLit[litSlot(l.kind)], li)
	}
}

// looksLikeIP is a cheap filter before netip.ParseAddr.
func looksLikeIP(v string) bool {
	return len(v) >= 2 && len(v) <= 45 && (strings.IndexByte(v, '.') >= 0 || strings.IndexByte(v, ':') >= 0)
}

// segTree answers "which numeric ranges contain x" in O(log n + matches).
// The distinct bounds cut the number line into elementary segments (each
// bound itself and the open gaps between bounds); every range is stored in
// O(log n) tree nodes covering its segments.
type segTree struct {
	pts   []float64
	nseg  int
	nodes [][]int32
}

func (t *segTree) addPoint(f float64) {
	if !math.IsInf(f, 0) {
		t.pts = append(t.pts, f)
	}
}

func (t *segTree) prepare() {
	sort.Float64s(t.pts)
	t.pts = slices.Compact(t.pts)
	t.nseg = 2*len(t.pts) + 1
	t.nodes = make([][]int32, 4*t.nseg)
}

func (t *segTree) pointIndex(f float64) int {
	return sort.SearchFloat64s(t.pts, f)
}

func (t *segTree) segOf(f float64) int {
	i := t.pointIndex(f)
	if i < len(t.pts) && t.pts[i] == f {
		return 2*i + 1
	}
	return 2 * i
}

func (t *segTree) insert(o *op, fid int32) {
	s0, s1 := 0, t.nseg-1
	if !math.IsInf(o.lo, -1) {
		i := t.pointIndex(o.lo)
		if o.loIncl {
			s0 = 2*i + 1
		} else {
			s0 = 2*i + 2
		}
	}
	if !math.IsInf(o.hi, 1) {
		j := t.pointIndex(o.hi)
		if o.hiIncl {
			s1 = 2*j + 1
		} else {
			s1 = 2 * j
		}
	}
	if s0 > s1 {
		return
	}
	t.add(1, 0, t.nseg-1, s0, s1, fid)
}

func (t *segTree) add(node, l, r, s0, s1 int, fid int32) {
	if s0 <= l && r <= s1 {
		t.nodes[node] = append(t.nodes[node], fid)
		return
	}
	m := (l + r) / 2
	if s0 <= m {
		t.add(2*node, l, m, s0, s1, fid)
	}
	if s1 > m {
		t.add(2*node+1, m+1, r, s0, s1, fid)
	}
}

func (t *segTree) query(f float64, fn func(int32)) {
	s := t.segOf(f)
	node, l, r := 1, 0, t.nseg-1
	for {
		for _, fid := range t.nodes[node] {
			fn(fid)
		}
		if l == r {
			return
		}
		m := (l + r) / 2
		if s <= m {
			node, r = 2*node, m
		} else {
			node, l = 2*node+1, m+1
		}
	}
}
