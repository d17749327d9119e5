"""Shell completion generated from the parser itself, so it never lags behind the CLI: for
each subcommand path, the words that may follow (subcommands and options), and for each
option with fixed choices, those choices."""

from __future__ import annotations

import argparse
import shlex

from infra.cli.common import options, subcommands, walk

BASH = """\
# trunkplane completion for bash (zsh: autoload -U bashcompinit && bashcompinit first)
_trunkplane() {
    local cur prev path word i
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    path=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if _trunkplane_has "${path}" "${word}"; then path="${path:+${path} }${word}"; fi
    done
    local choices
    choices="$(_trunkplane_choices "${path}|${prev}")"
    if [[ -n "${choices}" ]]; then
        COMPREPLY=($(compgen -W "${choices}" -- "${cur}"))
        return
    fi
    COMPREPLY=($(compgen -W "$(_trunkplane_words "${path}")" -- "${cur}"))
}
_trunkplane_has() {
    local next
    for next in $(_trunkplane_children "$1"); do [[ "${next}" == "$2" ]] && return 0; done
    return 1
}
_trunkplane_children() {
    case "$1" in
%(children)s
    esac
}
_trunkplane_words() {
    case "$1" in
%(words)s
    esac
}
_trunkplane_choices() {
    case "$1" in
%(choices)s
    esac
}
complete -F _trunkplane trunkplane
"""


def _case(key: str, words: list[str]) -> str:
    return f"        {shlex.quote(key)}) echo {shlex.quote(' '.join(words))} ;;"


def script(root: argparse.ArgumentParser, shell: str) -> str:
    children, words, choices = [], [], []
    for path, parser in walk(root):
        key = " ".join(path)
        names = [name for _, name, _ in subcommands(parser)]
        children.append(_case(key, names))
        positional = [str(c) for a in parser._actions if a.choices and not a.option_strings
                      and not isinstance(a, argparse._SubParsersAction) for c in a.choices]
        words.append(_case(key, names + positional + options(parser)))
        for action in parser._actions:
            if action.choices and action.option_strings and not isinstance(
                    action, argparse._SubParsersAction):
                for flag in action.option_strings:
                    choices.append(_case(f"{key}|{flag}", [str(c) for c in action.choices]))
    text = BASH % {"children": "\n".join(children), "words": "\n".join(words),
                   "choices": "\n".join(choices)}
    if shell == "zsh":
        text = "autoload -U +X bashcompinit && bashcompinit\n" + text
    return text
