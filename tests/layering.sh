#!/bin/sh
# layering: the library's folders depend one way (CONTRIBUTING.md, "Layers").
#   runtime/  includes only runtime/ and include/
#   sync/     includes runtime/ and include/, never io/
#   io/       includes runtime/ and include/, never sync/
# (sync/ and io/ use each other only through the public <weft.h>.)
# Every #include "..." of a library source is resolved against its own
# folder and checked; a violation is printed and fails the test.
# usage: layering.sh SOURCE_DIR
set -eu
src=${1:?usage: layering.sh SOURCE_DIR}
cd "$src"
bad=0
check() {   # check FOLDER ALLOWED...
    dir=$1
    shift
    for f in "$dir"/*.c "$dir"/*.h "$dir"/*/*.c "$dir"/*/*.h; do
        [ -f "$f" ] || continue
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
        while IFS= read -r line; do
            inc=$(printf '%s\n' "$line" | sed 's/.*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/')
            target=$(realpath -m --relative-to=. "$(dirname "$f")/$inc")
            top=${target%%/*}
            ok=0
            for a in "$@"; do [ "$top" = "$a" ] && ok=1; done
            # a header found through the include path (weft.h) lives in include/
            [ -e "$target" ] || ok=1
            if [ "$ok" = 0 ]; then
                echo "layering: $f:${line%%:*} includes $target ($dir/ may use only: $*)"
                echo x
            fi
        done
    done
}
out=$( { check runtime runtime include; check sync sync runtime include; check io io runtime include; } )
if printf '%s\n' "$out" | grep -q '^x$'; then
    printf '%s\n' "$out" | grep -v '^x$'
    exit 1
fi
echo "layering: runtime/ -> include/; sync/, io/ -> runtime/, include/: no back edge"
