"""A C/C++ tokenizer that keeps every character, so a rewritten source has the same lines as the original.

Each token can be rewritten in place (``out``, plus text inserted before/after it); :func:`render` joins
them back. Rewrites never add or remove newlines: whitespace and comments are tokens too and stay as they
are, so line N of the kernel string is line N of what the compiler sees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""
    (?P<nl>\n)
  | (?P<ws>(?:[ \t\r\f\v]|\\\r?\n)+)
  | (?P<comment>//(?:[^\n\\]|\\.)*|/\*.*?(?:\*/|\Z))
  | (?P<string>(?:u8|[uUL])?"(?:\\.|[^"\\\n])*"?|(?:u8|[uUL])?'(?:\\.|[^'\\\n])*'?)
  | (?P<number>\.?\d(?:[eEpP][+-]|[\w.'])*)
  | (?P<ident>[A-Za-z_$][\w$]*)
  | (?P<punct>->\*|\.\.\.|<<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||::|[-+*/%&|^!=<>]=|\#\#|[{}()\[\];,.?:~!%^&*+\-/<>=\#])
  | (?P<other>.)
""",
    re.S | re.X,
)


@dataclass
class Token:
    kind: str  # nl ws comment string number ident punct other
    text: str
    line: int  # 1-based line of the token's first character
    out: str | None = None  # replacement text (None: unchanged)
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    directive: str | None = None  # for tokens of a preprocessor line: its name ('define', 'pragma', ...)

    @property
    def code(self) -> bool:
        """Significant for the parser (not whitespace, newline or comment)."""
        return self.kind not in ("nl", "ws", "comment")

    def render(self) -> str:
        body = self.text if self.out is None else self.out
        return "".join(self.before) + body + "".join(self.after)


def tokenize(code: str) -> list[Token]:
    tokens, line = [], 1
    for m in _TOKEN.finditer(code):
        kind = m.lastgroup
        text = m.group()
        tokens.append(Token(kind, text, line))
        line += text.count("\n")
    _mark_directives(tokens)
    return tokens


def _mark_directives(tokens: list[Token]) -> None:
    """Tag each token of a preprocessor line (a '#' first on its line, to the end of the line, following
    backslash continuations, which the tokenizer keeps inside whitespace tokens) with the directive name."""
    at_line_start = True
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "nl":
            at_line_start = True
        elif tok.kind in ("ws", "comment"):
            pass
        elif at_line_start and tok.text == "#":
            j = i + 1
            while j < len(tokens) and tokens[j].kind in ("ws", "comment"):
                j += 1
            name = tokens[j].text if j < len(tokens) and tokens[j].kind == "ident" else ""
            while i < len(tokens) and tokens[i].kind != "nl":
                tokens[i].directive = name
                i += 1
            at_line_start = True
            continue
        else:
            at_line_start = False
        i += 1


def render(tokens: list[Token]) -> str:
    return "".join(t.render() for t in tokens)
