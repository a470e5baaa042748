# Examples of the blocking pool and task groups (included by
# examples/CMakeLists.txt).
#   fetch_all: coroutine "fetches", a file read and a CPU-heavy function on
#   weft_to_thread, all in one group, printed in completion order
#   (asyncio.as_completed + asyncio.to_thread).
add_executable(fetch_all fetch_all.c)
target_link_libraries(fetch_all PRIVATE weft)
