# Networking examples (streams and servers, include/weft/io.h):
#   echo_server [PORT [SECONDS]]      the asyncio echo server (readline / write / drain)
#   log_collector PORT OUTFILE [S]    TCP log collector: handlers -> weft_queue -> 2 consumers
#   log_collector demo [OUTFILE]      the same, fed by its own clients, self-checking
#   http_hello PORT [SECONDS]         minimal HTTP/1.1 keep-alive hello server (for wrk)
add_executable(echo_server echo_server.c)
target_link_libraries(echo_server PRIVATE weft)

add_executable(log_collector log_collector.c)
target_link_libraries(log_collector PRIVATE weft)

add_executable(http_hello http_hello.c)
target_link_libraries(http_hello PRIVATE weft)
