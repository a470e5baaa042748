# Networking examples (streams and servers, include/weft/io.h):
#   echo_server [PORT [SECONDS]]      the asyncio echo server (readline / write / drain)
#   log_collector PORT OUTFILE [S]    TCP log collector: handlers -> weft_queue -> 2 consumers
#   log_collector demo [OUTFILE]      the same, fed by its own clients, self-checking
#   http_hello PORT [SECONDS]         minimal HTTP/1.1 keep-alive hello server (for wrk),
#                                     with the runtime's metrics at /metrics
add_executable(echo_server echo_server.c)
target_link_libraries(echo_server PRIVATE weft)

add_executable(log_collector log_collector.c)
target_link_libraries(log_collector PRIVATE weft)

add_executable(http_hello http_hello.c)
target_link_libraries(http_hello PRIVATE weft)
# Its /metrics (weft_stats_format over HTTP), scraped twice by
# tests/observe/http_metrics_check.py.  Needs python3.
find_program(WEFT_PYTHON3 python3)
if(BUILD_TESTING AND WEFT_PYTHON3)
  add_test(NAME example_http_metrics
    COMMAND ${WEFT_PYTHON3} ${PROJECT_SOURCE_DIR}/tests/observe/http_metrics_check.py
            $<TARGET_FILE:http_hello>)
  set_tests_properties(example_http_metrics PROPERTIES LABELS "example;observe" TIMEOUT 120)
endif()
