"""Which tokens spell a type, position by position, with C++'s scopes: the translator's only "parser".

The rewrites need one fact the tokens do not carry: is ``half * x`` a multiplication or the declaration of
a pointer? C++ answers it with name lookup, so we do the same, lightly. One forward walk over the code keeps
a stack of scopes (braces, parameter lists, ``for``/``if`` headers, template headers) holding the names
declared there, as types (``typedef``, ``using``, ``struct``, template type parameters) or as values
(variables, parameters, functions). A name is a type where its innermost declaration says so; a name
declared nowhere in sight falls back to the built-in and file-wide type names (:mod:`.typescan`). So
``float half = 0.5f; y = half * x;`` multiplies, while ``half* p`` elsewhere still declares a pointer.

A *type span* is the run of tokens that spells one type: ``const unsigned int``, ``Box<float>``,
``cg::thread_block_tile<32>``, ``typename T::value_type``, ``decltype(x)``, ``struct S``. The walk records
every span (also inside template arguments and casts); the passes in :mod:`.rewrite` ask for the span
ending just before a ``*`` and never guess from names alone.

Macro bodies have no scopes: there only file-wide knowledge applies (``unscoped``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import typescan

# words that combine into one built-in type (`unsigned long long int`)
MULTIWORD = frozenset(
    {
        "signed",
        "unsigned",
        "short",
        "long",
        "int",
        "char",
        "float",
        "double",
        "bool",
        "void",
        "wchar_t",
        "char16_t",
        "char32_t",
        "auto",
    }
)
# may come before the type of a declaration and say nothing about it
SPECIFIERS = frozenset(
    {
        "static",
        "extern",
        "inline",
        "register",
        "constexpr",
        "__device__",
        "__host__",
        "__global__",
        "__forceinline__",
        "__noinline__",
        "__constant__",
        "__managed__",
        "__shared__",
        "thread_local",
        "typedef",
        "friend",
        "mutable",
        "virtual",
        "explicit",
        "__inline__",
        "__grid_constant__",
    }
)
SPECIFIER_CALLS = frozenset({"__align__", "alignas", "__attribute__", "__launch_bounds__", "__declspec"})
NOT_NAMES = (
    frozenset(
        {
            "return",
            "sizeof",
            "new",
            "delete",
            "operator",
            "case",
            "goto",
            "throw",
            "this",
            "default",
            "if",
            "else",
            "for",
            "while",
            "do",
            "switch",
            "break",
            "continue",
            "template",
            "typename",
            "using",
            "namespace",
            "true",
            "false",
            "nullptr",
            "alignof",
            "decltype",
            "static_assert",
            "static_cast",
            "reinterpret_cast",
            "const_cast",
            "dynamic_cast",
            "public",
            "private",
            "protected",
        }
    )
    | typescan.CV
    | MULTIWORD
    | SPECIFIERS
)
CONTROL = frozenset({"for", "if", "while", "switch"})
STRUCTURE = frozenset({"{", "}", "(", ")", ";", ",", ":"})  # the punctuation the walk acts on
# cooperative groups' classes (llmc_cg.h): types after any qualifier (cg::, cooperative_groups::), and
# unqualified after `using namespace cooperative_groups;`
CG_TYPES = frozenset(
    {
        "thread_block",
        "thread_block_tile",
        "thread_group",
        "grid_group",
        "coalesced_group",
        "plus",
        "less",
        "greater",
        "bit_and",
        "bit_or",
        "bit_xor",
    }
)


@dataclass
class Scope:
    kind: str  # file, brace, paren, control, carry
    opener: int = -1  # position of its '{' or '(' (brace, paren, control)
    names: dict[str, bool] = field(default_factory=dict)  # name -> is a type
    owner: int | None = None  # carry: the '{' whose block it belongs to


@dataclass
class _Decl:
    depth: int  # len(stack) where its names go
    params: bool  # a parameter: a ',' ends it (elsewhere a ',' starts the next declarator)
    typedef: bool
    end: int  # position of the type span's last token


class Analysis:
    """The result: per position, part of a type span / the word that makes it a type; spans by their end."""

    def __init__(self, n: int):
        self.typeish = [False] * n
        self.typeword = [False] * n
        self.start_of: dict[int, int] = {}  # last position of a span -> its first position
        self.values: set[str] = set()  # names the region declares as variables, parameters, functions

    def mark(self, a: int, b: int, words: list[int]) -> None:
        for k in range(a, b + 1):
            self.typeish[k] = True
        for k in words:
            self.typeword[k] = True
        if b not in self.start_of or self.start_of[b] > a:  # `Box<Box<float>>`: the outer span wins
            self.start_of[b] = a


class _Walker:
    """One forward pass over a region: the scope stack, the declaration being read, the spans found."""

    def __init__(self, seq, known: typescan.Types, scoped: bool, macro_params: frozenset[str], hidden: frozenset[str]):
        self.seq = seq
        self.n = len(seq)
        self.t = seq.t
        self.kind = seq.kind
        self.known = known
        self.scoped = scoped
        self.stack = [Scope("file")]
        self.decl: _Decl | None = None
        self.using_cg = known.using_cg
        self.out = Analysis(self.n)
        self.declared_at: set[int] = set()  # positions of declared names (never a type there)
        self.start_ok = {0}  # positions where a statement (a declaration) may start
        self.macro_params = macro_params  # a #define's parameters
        self.hidden = hidden  # in a #define: names the code declares as variables

    # ------------------------------------------------------------------------------------------ lookup
    def is_type_name(self, name: str) -> bool:
        if self.scoped:
            for scope in reversed(self.stack):
                if name in scope.names:
                    return scope.names[name]
        elif name in self.hidden:  # a #define body: a name the code uses as a variable is one here too
            return False
        return name in typescan.BUILTIN or name in self.known.user or (self.using_cg and name in CG_TYPES)

    def member_type(self, name: str) -> bool:
        """The last name of `A::B::name`: a type if any declaration in the file makes such a name a type."""
        return name in typescan.BUILTIN or name in self.known.user or name in CG_TYPES

    def declare(self, name: str, is_type: bool, depth: int | None = None) -> None:
        if not is_type:
            self.out.values.add(name)
        if self.scoped:
            self.stack[(depth if depth is not None else len(self.stack)) - 1].names[name] = is_type

    def declare_type_here(self, name: str) -> None:
        """`struct S`: S belongs to the enclosing block, not to a template header or parameter list."""
        if self.scoped:
            scope = next(s for s in reversed(self.stack) if s.kind in ("file", "brace"))
            scope.names[name] = True

    def pop_to(self, opener: int, kinds: tuple[str, ...]) -> Scope | None:
        """Close the scope opened at ``opener`` (and anything left open inside it); None if none was."""
        if not any(s.opener == opener and s.kind in kinds for s in self.stack):
            return None
        while True:
            scope = self.stack.pop()
            if scope.opener == opener and scope.kind in kinds:
                return scope

    # ------------------------------------------------------------------------------------ type spans
    def closing_angle(self, i: int) -> int | None:
        """The '>' matching the '<' at i, or None ('>>' closes two)."""
        depth, j = 0, i
        while j < self.n:
            x = self.t(j)
            if x in ("(", "["):
                m = self.seq.match(j)
                if m is None:
                    return None
                j = m
            elif x in (";", "{", "}", ")", "]"):
                return None
            else:
                depth += {"<": 1, ">": -1, ">>": -2}.get(x, 0)
                if depth <= 0:
                    return j
            j += 1
        return None

    def name_chain(self, i: int, forced: bool) -> tuple[int, list[int]] | None:
        """`A<...>::B::C` from i: (last position, [the type word]) when it names a type, else None."""
        j = i
        if self.t(j) == "::":
            j += 1
        qualified = j != i
        while True:
            if self.kind(j) != "ident" or self.t(j) in NOT_NAMES:
                return None
            name_at = j
            name = self.t(j)
            if self.t(j + 1) == "::" and self.kind(j + 2) == "ident":
                j += 2
                qualified = True
                continue
            if self.t(j + 1) == "<" and (forced or (self.member_type(name) if qualified else self.is_type_name(name))):
                close = self.closing_angle(j + 1)
                if close is not None:
                    j = close
                    if self.t(j + 1) == "::" and self.kind(j + 2) == "ident":  # Box<float>::value_type
                        j += 2
                        qualified = True
                        continue
            break
        if forced or (self.member_type(name) if qualified else self.is_type_name(name)):
            return j, [name_at]
        return None

    def type_span(self, i: int) -> tuple[int, list[int]] | None:
        """The type spelled from position i: (last position, its type words), or None."""
        j, words = i, []
        while self.t(j) in typescan.CV:
            j += 1
        x = self.t(j)
        if x in typescan.ELABORATED:
            k = j + 1
            if x == "enum" and self.t(k) in ("class", "struct"):
                k += 1
            if self.kind(k) != "ident":
                return None
            chain = self.name_chain(k, forced=True)
            if chain is None:
                return None
            j, words = chain[0] + 1, chain[1]
        elif x == "typename":
            chain = self.name_chain(j + 1, forced=True)
            if chain is None:
                return None
            j, words = chain[0] + 1, chain[1]
        elif x == "decltype" and self.t(j + 1) == "(":
            m = self.seq.match(j + 1)
            if m is None:
                return None
            words, j = [j], m + 1
        elif x in MULTIWORD:
            while self.t(j) in MULTIWORD or (words and self.t(j) in typescan.CV):
                if self.t(j) in MULTIWORD:
                    words.append(j)
                j += 1
        elif x in self.macro_params and self.macro_param_is_type(j, cv=j > i):
            words, j = [j], j + 1
        elif x == "::" or self.kind(j) == "ident":
            if self.t(j - 1) == "::" and j == i:  # the middle of a chain that started earlier
                return None
            chain = self.name_chain(j, forced=False)
            if chain is None:
                return None
            j, words = chain[0] + 1, chain[1]
        else:
            return None
        while self.t(j) in typescan.CV:
            j += 1
        return j - 1, words

    def macro_param_is_type(self, j: int, cv: bool) -> bool:
        """A macro parameter stands for a type where an expression cannot stand: after const/volatile, or
        before stars that end the body or close a bracket (`#define PTR(T) T*`, `((T*)(p))`, `<T*>`)."""
        if cv:
            return True
        k = j + 1
        if self.t(k) != "*":
            return False
        while self.t(k) == "*" or self.t(k) in typescan.CV:
            k += 1
        return k >= self.n or self.t(k) in (")", ">", ",")

    # ------------------------------------------------------------------------------------ declarations
    def specifiers_end(self, i: int) -> int:
        """Skip `static __device__ __align__(16) extern "C"` and the like."""
        while i < self.n:
            x = self.t(i)
            if x in SPECIFIERS or x == "extern" or (self.kind(i) == "string" and self.t(i - 1) == "extern"):
                i += 1
            elif x in SPECIFIER_CALLS and self.t(i + 1) == "(":
                m = self.seq.match(i + 1)
                if m is None:
                    return i
                i = m + 1
            else:
                return i
        return i

    def declarator(self, k: int) -> int | None:
        """The declared name's position after a type (`* const __restrict__ name`), or None."""
        while self.t(k) in ("*", "&", "&&") or self.t(k) in typescan.CV:
            k += 1
        if self.t(k) == "(" and self.t(k + 1) in ("*", "&") and self.kind(k + 2) == "ident":  # (*fp)(...)
            k += 2
        if self.kind(k) == "ident" and self.t(k) not in NOT_NAMES:
            nxt = self.t(k + 1)
            if nxt in ("=", ";", ",", "[", "(", ")", "{", ":"):
                return k
        return None

    def start_declaration(self, i: int, params: bool) -> int | None:
        """At a place where a declaration may start: mark its type and first declarator; the next position."""
        a = self.specifiers_end(i)
        typedef = any(self.t(p) == "typedef" for p in range(i, a))
        span = self.type_span(a)
        if span is None:
            return None
        end, words = span
        name = self.declarator(end + 1)
        if name is None:
            return None
        self.out.mark(a, end, words)
        self.inner_spans(a, end)
        self.decl = _Decl(len(self.stack), params, typedef, end)
        self.add_declarator(name)
        return name + 1

    def add_declarator(self, k: int) -> None:
        self.declared_at.add(k)
        self.declare(self.t(k), self.decl.typedef, self.decl.depth)
        if self.t(k + 1) == "(" and not self.decl.params:
            self.decl = None  # a function (its parameters open a scope) or `V v(1.f)`

    def inner_spans(self, a: int, b: int) -> None:
        """Spans inside a span's template arguments or decltype (`Box<float*>`: the float)."""
        k = a + 1
        while k <= b:
            if k not in self.declared_at and self.t(k - 1) not in (".", "->", "::"):
                span = self.type_span(k)
                if span is not None and span[0] <= b:
                    self.out.mark(k, span[0], span[1])
            k += 1

    def template_header(self, i: int) -> int:
        """`template <typename T, int N>` at i: its parameters become a scope for the next declaration."""
        close = self.closing_angle(i + 1)
        if close is None:
            return i + 1
        scope = Scope("carry")
        k = i + 2
        while k < close:
            # one parameter: up to the next ',' at this level
            end = k
            depth = 0
            while end < close and not (depth == 0 and self.t(end) == ","):
                depth += {"<": 1, ">": -1, "(": 1, ")": -1}.get(self.t(end), 0)
                end += 1
            words = [p for p in range(k, end) if self.kind(p) == "ident"]
            eq = next((p for p in range(k, end) if self.t(p) == "="), end)
            if words and self.t(words[0]) in ("typename", "class"):
                if len(words) > 1 and words[1] < eq:
                    scope.names[self.t(words[1])] = True
            else:
                named = [p for p in words if p < eq and self.t(p) not in MULTIWORD and self.t(p) not in NOT_NAMES]
                if len(named) >= 1 and (len(named) > 1 or self.t(k) in MULTIWORD):
                    scope.names[self.t(named[-1])] = False
            k = end + 1
        # default arguments and non-type parameter types are types too
        self.inner_spans(i + 1, close)
        if self.scoped:
            self.stack.append(scope)
        self.start_ok.add(close + 1)
        return close + 1

    # ----------------------------------------------------------------------------------------- the walk
    def pop_unowned(self) -> None:
        while len(self.stack) > 1 and self.stack[-1].kind == "carry" and self.stack[-1].owner is None:
            self.stack.pop()

    def run(self) -> Analysis:
        texts, kinds = self.seq._texts, self.seq._kinds
        i = 0
        while i < self.n:
            x = texts[i]
            prev = texts[i - 1] if i else ""
            if kinds[i] != "ident" and x not in STRUCTURE:  # numbers, strings, operators: nothing to do
                i += 1
                continue
            if x == "template" and self.t(i + 1) == "<":
                i = self.template_header(i)
                continue
            if x == "{":
                for scope in self.stack:
                    if scope.kind == "carry" and scope.owner is None:
                        scope.owner = i
                self.stack.append(Scope("brace", i))
                self.start_ok.add(i + 1)
                i += 1
                continue
            if x == "}":
                opener = self.seq.match(i)
                self.pop_to(opener, ("brace",))
                while len(self.stack) > 1 and self.stack[-1].kind == "carry" and self.stack[-1].owner == opener:
                    self.stack.pop()
                if self.decl is not None and self.decl.depth > len(self.stack):
                    self.decl = None
                self.start_ok.add(i + 1)
                i += 1
                continue
            if x == "(":
                self.stack.append(Scope("control" if prev in CONTROL else "paren", i))
                i += 1
                nxt = self.start_declaration(i, params=prev not in CONTROL)
                if nxt is not None:
                    i = nxt
                continue
            if x == ")":
                scope = self.pop_to(self.seq.match(i), ("paren", "control"))
                if self.decl is not None and self.decl.depth > len(self.stack):
                    self.decl = None
                if scope is not None and scope.names and self.scoped:
                    self.stack.append(Scope("carry", names=scope.names))
                i += 1
                continue
            if x == ";":
                if self.decl is not None and self.decl.depth >= len(self.stack):
                    self.decl = None
                self.pop_unowned()
                self.start_ok.add(i + 1)
                i += 1
                continue
            if x == ",":
                d = self.decl
                if d is not None and d.depth == len(self.stack):
                    if d.params:
                        self.decl = None
                    else:
                        name = self.declarator(i + 1)
                        if name is not None:
                            self.add_declarator(name)
                            i = name + 1
                            continue
                if self.stack[-1].kind in ("paren", "control") and self.decl is None:
                    nxt = self.start_declaration(i + 1, params=self.stack[-1].kind == "paren")
                    if nxt is not None:
                        i = nxt
                        continue
                i += 1
                continue
            if x == ":" and prev in ("public", "private", "protected", "default"):
                self.start_ok.add(i + 1)
            if x in ("else", "do"):
                self.start_ok.add(i + 1)
            if x == "using":
                i = self.using(i)
                continue
            if x in typescan.ELABORATED and self.kind(i + 1) == "ident" and prev != "enum":
                k = i + 2 if (x == "enum" and self.t(i + 1) in ("class", "struct")) else i + 1
                while self.t(k) in typescan.ATTRIBUTES and self.t(k + 1) == "(" and self.seq.match(k + 1):
                    k = self.seq.match(k + 1) + 1  # struct __align__(16) S {
                if self.kind(k) == "ident" and self.t(k + 1) in ("{", ";", ":"):
                    self.declare_type_here(self.t(k))  # struct S { ... }: S is a type from here on
            if kinds[i] != "ident":
                i += 1
                continue
            if i in self.start_ok:
                nxt = self.start_declaration(i, params=False)
                if nxt is not None:
                    i = nxt
                    continue
            if i not in self.declared_at and (prev not in (".", "->") or self.trailing_return(i)):
                span = self.type_span(i)
                if span is not None:
                    self.out.mark(i, span[0], span[1])
                    self.inner_spans(i, span[0])
                    i = span[0] + 1
                    continue
            i += 1
        return self.out

    def trailing_return(self, i: int) -> bool:
        """`[](float a) -> float {` / `auto f() -> T*;`: a type after '->', not a member."""
        if self.t(i - 1) != "->" or self.t(i - 2) != ")":
            return False
        span = self.type_span(i)
        k = span[0] + 1 if span else i
        while self.t(k) in ("*", "&", "&&") or self.t(k) in typescan.CV:
            k += 1
        return span is not None and self.t(k) in ("{", ";", "=")

    def using(self, i: int) -> int:
        """`using X = T;`, `using namespace cooperative_groups;`, `using cg::thread_block;`."""
        if self.t(i + 1) == "namespace":
            if self.t(i + 2) == "cooperative_groups" or self.t(i + 2) in self.known.cg_aliases:
                self.using_cg = True
            return i + 2
        if self.kind(i + 1) == "ident" and self.t(i + 2) == "=":
            self.declare(self.t(i + 1), True)
            self.declared_at.add(i + 1)
            self.start_ok.add(i + 3)  # the aliased type is a span like any other
            return i + 3
        j = i + 1
        while self.kind(j) == "ident" and self.t(j + 1) == "::":
            j += 2
        if self.kind(j) == "ident" and self.t(j + 1) == ";":
            self.declare(self.t(j), self.member_type(self.t(j)))
        return i + 1


def analyze(
    seq,
    known: typescan.Types,
    scoped: bool = True,
    macro_params: frozenset[str] = frozenset(),
    hidden: frozenset[str] = frozenset(),
) -> Analysis:
    """Type spans of one region (see the module's docstring). ``scoped=False`` for a #define body: its
    parameters are types where only a type can stand (``macro_params``), and names that the code declares
    as variables somewhere (``hidden``, the code's ``Analysis.values``) are not types there."""
    return _Walker(seq, known, scoped, macro_params, hidden).run()
