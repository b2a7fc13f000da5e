"""The rewriting passes of :mod:`.translate`, each over one :class:`~.translate.Seq` of significant tokens.

Order matters: __shared__ declarations first (they consume their whole statement), then declarations
with several declarators, then the remaining pointer types, then unary ``*``, ``->`` and cast keywords.
A pass marks what it rewrote in ``seq.consumed`` so later passes leave it alone. Every rewrite edits token
texts only, so lines never move.
"""

from __future__ import annotations

from . import typescan
from .translate import CASTS, CONTROL, PREFIX_OPS, UNARY_PREV, Seq

STORAGE = frozenset(
    {
        "static",
        "extern",
        "inline",
        "register",
        "constexpr",
        "__device__",
        "__host__",
        "__forceinline__",
        "__noinline__",
        "__constant__",
        "__managed__",
        "thread_local",
        "__global__",
    }
)
KEYWORDS = frozenset({"return", "sizeof", "new", "delete", "operator", "case", "goto", "throw", "this"})


def _wrap(type_text: str, stars: int) -> str:
    for _ in range(stars):
        type_text = f"llmc::ptr<{type_text}>"
    return type_text


def _blank(seq: Seq, a: int, b: int) -> None:
    for k in range(a, b + 1):
        seq.set(k, "")
        seq.consumed.add(k)


def _statement_start(seq: Seq, i: int) -> int:
    while i > 0 and seq.t(i - 1) not in (";", "{", "}"):
        i -= 1
    return i


def _statement_end(seq: Seq, i: int) -> int | None:
    while i < len(seq):
        x = seq.t(i)
        if x == ";":
            return i
        if x in ("(", "[", "{"):
            m = seq.match(i)
            if m is None or x == "{":
                return None
            i = m
        i += 1
    return None


def _in_function(seq: Seq) -> list[bool]:
    """Per position: inside a brace that is not just `extern "C" {` or `namespace x {`."""
    out, stack = [], []
    for i in range(len(seq)):
        x = seq.t(i)
        out.append(any(stack))
        if x == "{":
            p = seq.t(i - 1)
            linkage = (
                (seq.kind(i - 1) == "string" and seq.t(i - 2) == "extern")
                or p == "namespace"
                or seq.t(i - 2) == "namespace"
            )
            stack.append(not linkage)
        elif x == "}" and stack:
            stack.pop()
    return out


# ------------------------------------------------------------------------------------------- __shared__
def _parse_shared(seq: Seq, a: int, b: int):
    """`[extern] [static] __shared__ [__align__(n)] T name[dims], ...;` (a..b, b is ';') -> parts or None."""
    extern, types, decls = False, [], []
    i = a
    while i < b:
        x = seq.t(i)
        if x == "extern":
            extern = True
        elif x in ("static", "__shared__", "__device__"):
            pass
        elif x in ("__align__", "__attribute__", "alignas") and seq.t(i + 1) == "(":
            i = seq.match(i + 1)
            if i is None:
                return None
        elif seq.is_typeish(i):
            types.append(x)
        else:
            break
        i += 1
    if not types:
        return None
    while i < b:
        stars = 0
        while seq.t(i) == "*":
            stars += 1
            i += 1
        if seq.kind(i) != "ident":
            return None
        name, dims = seq.t(i), []
        i += 1
        while seq.t(i) == "[":
            m = seq.match(i)
            if m is None:
                return None
            dims.append(" ".join(seq.t(k) for k in range(i + 1, m)))
            i = m + 1
        decls.append((name, stars, dims))
        if seq.t(i) == ",":
            i += 1
        elif i != b:
            return None  # an initializer (not allowed in CUDA either) or something we do not know
    return extern, " ".join(types), decls


def shared_declarations(seq: Seq) -> None:
    inside = _in_function(seq)
    renames: dict[str, str] = {}
    ident = 0
    i = 0
    while i < len(seq):
        if seq.t(i) != "__shared__" or i in seq.consumed:
            if seq.kind(i) == "ident" and seq.t(i) in renames and seq.t(i - 1) not in (".", "->", "::"):
                seq.set(i, renames[seq.t(i)])
            i += 1
            continue
        a, b = _statement_start(seq, i), _statement_end(seq, i)
        parts = _parse_shared(seq, a, b) if b is not None else None
        if parts is None:
            i += 1
            continue
        extern, elem, decls = parts
        out = []
        for name, stars, dims in decls:
            t = _wrap(elem, stars)
            if extern:
                kind, call = f"llmc::ptr<{t}>", f"llmc::shared_dynamic<{t}>()"
            else:
                for d in reversed(dims):
                    t = f"llmc::shared_array<{t}, ({d})>"
                ident += 1
                kind, call = f"{t} &", f'llmc::shared_static<{t}, {ident}>("{name}")'
            if inside[i]:
                out.append(f"{kind} {name} = {call};")
            else:  # file scope: an accessor, and later uses of the name call it
                out.append(f"static inline {kind} llmc_shared_{name}() {{ return {call}; }}")
                renames[name] = f"llmc_shared_{name}()"
        _blank(seq, a, b)
        seq.set(a, " ".join(out))
        i = b + 1


# ------------------------------------------------------------------------------- declarations with ','
def _skip_initializer(seq: Seq, k: int) -> int | None:
    while k < len(seq) and seq.t(k) not in (",", ";"):
        if seq.t(k) in ("(", "[", "{"):
            k = seq.match(k)
            if k is None:
                return None
        elif seq.t(k) in (")", "]", "}"):
            return None
        k += 1
    return k if k < len(seq) else None


def declarations(seq: Seq) -> None:
    """`float *a, *b;` / `float a, *b;`: give each declarator its own checked-pointer type."""
    for i in range(len(seq)):
        if i in seq.consumed:
            continue
        for_init = seq.t(i - 1) == "(" and seq.t(i - 2) == "for"
        if not (i == 0 or seq.t(i - 1) in (";", "{", "}") or for_init):
            continue
        j, storage, types = i, [], []
        while j < len(seq):
            x = seq.t(j)
            if x in STORAGE:
                storage.append(x)
            elif seq.is_typeish(j) and (not types or types[-1] == j - 1):
                types.append(j)
            else:
                break
            j += 1
        if not types or not any(seq.is_typeword(p) for p in types) or "auto" in (seq.t(p) for p in types):
            continue
        decls, commas, k = [], [], j
        while True:
            stars = []
            while seq.t(k) == "*":
                stars.append(k)
                k += 1
            if seq.kind(k) != "ident" or seq.is_typeword(k) or seq.t(k) in KEYWORDS or seq.t(k) in typescan.CV:
                decls = None
                break
            k += 1
            while seq.t(k) == "[":
                m = seq.match(k)
                k = m + 1 if m is not None else len(seq)
            if seq.t(k) == "(":
                decls = None  # a function, or constructor-style initialisation: not ours
                break
            if seq.t(k) == "=":
                k = _skip_initializer(seq, k + 1)
            elif seq.t(k) == "{":
                m = seq.match(k)
                k = m + 1 if m is not None else None
            if k is None:
                decls = None
                break
            decls.append(stars)
            if seq.t(k) == ",":
                commas.append(k)
                k += 1
                continue
            if seq.t(k) != ";":
                decls = None
            break
        if not decls or len(decls) < 2 or not any(decls):
            continue
        base = " ".join(seq.t(p) for p in types)
        counts = {len(s) for s in decls}
        if len(counts) > 1 and for_init:
            continue
        for p in types[1:]:
            seq.set(p, "")
        seq.set(types[0], _wrap(base, len(decls[0])))
        seq.consumed.update(types)
        for n, stars in enumerate(decls):
            for s in stars:
                seq.set(s, "")
                seq.consumed.add(s)
            if n and len(counts) > 1:  # mixed: split into one declaration per declarator
                seq.set(commas[n - 1], "; " + " ".join(storage + [_wrap(base, len(stars))]))


# ------------------------------------------------------------------------------------ pointer types
def pointer_types(seq: Seq) -> None:
    """`T *` (with cv-qualifiers, several stars) -> `llmc::ptr<T>` wherever a type is written."""
    k = 0
    while k < len(seq):
        if seq.t(k) != "*" or k in seq.consumed:
            k += 1
            continue
        first = seq.type_start(k - 1)  # the type spelled right before the star (scopes.py)
        after = _after_stars(seq, k)  # `half * 2`, `half * (x)`: `half` is a variable out of sight
        if first is None or first in seq.consumed or seq.kind(after) in ("number", "string") or seq.t(after) == "(":
            k += 1
            continue
        # as rewritten so far: `Box<float*>*` -> llmc::ptr<Box<llmc::ptr<float>>>
        words = [w for w in (_current(seq, p) for p in range(first, k)) if w]
        text = " ".join(words)
        auto = [w for w in words if w not in typescan.CV] == ["auto"]
        # the run of stars, with cv-qualifiers of the pointers in between (`float * const * p`)
        run, m, pending = [], k, ""
        while m < len(seq):
            if seq.t(m) == "*":
                text = text if auto else f"llmc::ptr<{text}{pending}>"
                pending = ""
            elif run and seq.t(m) in typescan.CV and _more_stars(seq, m):
                pending += " " + seq.t(m)
            else:
                break
            run.append(m)
            m += 1
        if auto:
            for p in run:
                seq.set(p, "")
        else:
            seq.set(first, text)
            for p in list(range(first + 1, k)) + run:
                seq.set(p, "")
        seq.consumed.update(range(first, k))
        seq.consumed.update(run)
        k = m


def _current(seq: Seq, p: int) -> str:
    tok = seq.tok(p)
    return tok.text if tok.out is None else tok.out


def _after_stars(seq: Seq, k: int) -> int:
    while seq.t(k) == "*" or seq.t(k) in typescan.CV:
        k += 1
    return k


def _more_stars(seq: Seq, m: int) -> bool:
    while m < len(seq) and seq.t(m) in typescan.CV:
        m += 1
    return seq.t(m) == "*"


# ----------------------------------------------------------------------------------- *p  ->  (p)[0]
def _is_unary(seq: Seq, k: int) -> bool:
    if k == 0:
        return True
    p = seq.t(k - 1)
    if p == ")":
        m = seq.match(k - 1)
        if m is None:
            return False
        if seq.t(m - 1) in ("sizeof", "alignof", "__alignof__", "decltype", "__builtin_offsetof"):
            return False
        return seq.type_group(m + 1, k - 2) or seq.t(m - 1) in CONTROL
    if p in ("++", "--"):
        q = k - 2
        return not (seq.kind(q) in ("ident", "number") or seq.t(q) in (")", "]"))
    return p in UNARY_PREV


def _closing_angle(seq: Seq, i: int) -> int | None:
    depth = 0
    while i < len(seq):
        x = seq.t(i)
        if x == "(":
            i = seq.match(i)
            if i is None:
                return None
        depth += {"<": 1, ">": -1, ">>": -2}.get(x, 0)
        if depth <= 0:
            return i
        i += 1
    return None


def _postfix(seq: Seq, j: int) -> int | None:
    while True:
        n = seq.t(j + 1)
        if n in ("[", "("):
            j = seq.match(j + 1)
            if j is None:
                return None
        elif n in (".", "->") and seq.kind(j + 2) == "ident":
            j += 2
        elif n in ("++", "--"):
            j += 1
        else:
            return j


def _operand(seq: Seq, i: int) -> int | None:
    """The last position of the cast-expression starting at i (the operand of a unary '*'), or None."""
    x = seq.t(i)
    if x in PREFIX_OPS:
        return _operand(seq, i + 1)
    if x == "(":
        m = seq.match(i)
        if m is None:
            return None
        if seq.type_group(i + 1, m - 1):
            return _operand(seq, m + 1)
        return _postfix(seq, m)
    if x in CASTS and seq.t(i + 1) == "<":
        close = _closing_angle(seq, i + 1)
        if close is None or seq.t(close + 1) != "(":
            return None
        m = seq.match(close + 1)
        return None if m is None else _postfix(seq, m)
    if seq.kind(i) in ("ident", "number", "string") and x not in ("sizeof", "alignof", "new", "delete"):
        j = i
        while seq.t(j + 1) == "::" and seq.kind(j + 2) == "ident":
            j += 2
        return _postfix(seq, j)
    return None


def dereferences(seq: Seq) -> None:
    """Unary `*E` -> `(E)[0]`, so the access is checked with its line. Right to left: `**pp` nests."""
    for k in range(len(seq) - 1, -1, -1):
        if seq.t(k) != "*" or k in seq.consumed or seq.t(k - 1) == "operator" or not _is_unary(seq, k):
            continue
        if seq.t(k - 1) == "(" and seq.kind(k + 1) == "ident" and seq.t(k + 2) == ")" and seq.t(k + 3) in ("(", "["):
            continue  # a function-pointer declarator `float (*f)(float)`, or a call through one
        end = _operand(seq, k + 1)
        if end is None:
            continue
        seq.set(k, "(")
        seq.tok(end).after.append(f")[{_tagged('0', access_kind(seq, k, end))}]")
        seq.consumed.add(k)


def arrows(seq: Seq) -> None:
    """`a->b` -> `a[0].b` (the same for a pointer); trailing return types `-> T` stay."""
    for k in range(len(seq)):
        if seq.t(k) != "->" or k in seq.consumed or seq.t(k - 1) == "operator":
            continue
        if seq.is_typeish(k + 1) or seq.t(k + 1) in ("decltype", "auto"):
            continue
        end = k + 1 if seq.kind(k + 1) == "ident" else k
        seq.set(k, f"[{_tagged('0', access_kind(seq, _chain_start(seq, k), end))}].")


def cast_keywords(seq: Seq) -> None:
    for k in range(len(seq)):
        if k in seq.consumed:
            continue
        if seq.t(k) == "reinterpret_cast":
            seq.set(k, "llmc::reinterpret_cast_")
        elif seq.t(k) == "const_cast":
            seq.set(k, "llmc::const_cast_")


# ------------------------------------------------------------------------ loads, stores, addresses
# `llmc::ptr<T>::operator[]` returns `T&`, so at run time a load and a store look alike. The tokens around an
# access tell them apart: `p[i] = v` is a store, `p[i] += v` / `p[i]++` / `++p[i]` an update (load then
# store), `&p[i]` takes an address (no access: atomics report their own), anything else a load. The index of
# a store, update or address is wrapped in a tag (`p[llmc::st((i))] = v`) that selects an operator[] overload;
# loads stay as written. Not seen (they count as loads): a write through a reference (`float& r = p[i]; r = v`,
# a `T&` parameter), through a member array (`p[i].a[k] = v`) or to a parenthesised lvalue (`(c ? p[i] : q[i]) = v`).
COMPOUND = frozenset({"+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>="})
TAGS = {"store": "llmc::st", "update": "llmc::upd", "addr": "llmc::adr"}
NOT_SUBSCRIPTED = frozenset({"operator", "delete", "new", "return", "sizeof", "case", "throw", "alignof", "decltype"})


def _tagged(index: str, kind: str) -> str:
    return f"{TAGS[kind]}(({index}))" if kind in TAGS else index


def _chain_start(seq: Seq, k: int) -> int:
    """The first token of the postfix expression that ends just before position k (`a.b[i][j]`, `f(x)[i]`)."""
    i = k - 1
    while i >= 0:
        x = seq.t(i)
        if x in (")", "]"):
            m = seq.match(i)
            if m is None:
                return i + 1
            i = m - 1
            continue
        if seq.kind(i) in ("ident", "number", "string"):
            if seq.t(i - 1) in (".", "->", "::"):
                i -= 2
                continue
            return i
        return i + 1
    return 0


def access_kind(seq: Seq, start: int, end: int) -> str:
    """How the lvalue spelled by positions start..end is used: 'store', 'update', 'addr' or 'load'."""
    before = seq.t(start - 1)
    prefix = before in ("++", "--", "&", "*") and _is_unary(seq, start - 1)
    if prefix and before in ("&", "*"):
        return "addr" if before == "&" else "load"  # `&p[i]`; `*p[i] = v` stores through the loaded pointer
    j = end
    while seq.t(j + 1) == "." and seq.kind(j + 2) == "ident":  # a member of the element: p[i].x = v
        j += 2
    nxt = seq.t(j + 1)
    if nxt == "=" and seq.t(j + 2) != "{":
        return "store"
    if nxt in COMPOUND or nxt in ("++", "--") or prefix:
        return "update"
    return "load"


def _declarator(seq: Seq, k: int) -> bool:
    """`float x[4] = {...}`, `T *a[2]`: the name before '[' is being declared, not indexed."""
    j = k - 2
    while seq.t(j) in ("*", "&", "&&") or seq.t(j) in typescan.CV:
        j -= 1
    return seq.is_typeish(j) or seq.t(j) in STORAGE or (j < k - 2 and seq.t(j).endswith(">"))


def accesses(seq: Seq) -> None:
    """Tag the index of every subscript that stores, updates or takes an address (see above)."""
    for k in range(len(seq)):
        if seq.t(k) != "[" or k in seq.consumed:
            continue
        close = seq.match(k)
        if close is None or close == k + 1 or seq.t(k + 1) == "[" or seq.t(close + 1) == "[":
            continue  # `[]`, an attribute `[[...]]`, or `s[i]` of `s[i][j]` (a row, or a loaded pointer)
        prev = seq.t(k - 1)
        if prev in (")", "]"):
            pass
        elif seq.kind(k - 1) != "ident" or prev in NOT_SUBSCRIPTED or seq.is_typeword(k - 1) or _declarator(seq, k):
            continue
        kind = access_kind(seq, _chain_start(seq, k), close)
        if kind in TAGS:
            seq.tok(k).after.append(f"{TAGS[kind]}((")
            seq.tok(close).before.append("))")
