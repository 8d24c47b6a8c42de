<?php
// Driven by tests/php_sessions.rs: one PHP "request" per process, against sessiond through
// phpredis's session handler (configured with -d flags by the test).
// Usage: php session.php <mode> <session-id> [args...]
$mode = $argv[1];
$id = $argv[2];
session_id($id);

function wait_for_file($path) {
    $deadline = microtime(true) + 20;
    while (!file_exists($path)) {
        if (microtime(true) > $deadline) { fwrite(STDERR, "timeout waiting for $path\n"); exit(3); }
        usleep(5000);
    }
}

switch ($mode) {
    case 'write':
        session_start();
        $_SESSION['user'] = $argv[3];
        $_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
        session_write_close();
        echo "ok";
        break;
    case 'read':
        session_start();
        echo json_encode($_SESSION);
        session_write_close();
        break;
    case 'regenerate':
        session_start();
        session_regenerate_id(true);
        $_SESSION['regenerated'] = true;
        echo session_id();
        session_write_close();
        break;
    case 'destroy':
        session_start();
        echo session_destroy() ? "destroyed" : "failed";
        break;
    case 'increment':
        // Read-modify-write of a counter; argv[3] = a marker file to create once the session
        // is open (lock held), argv[4] = a file to wait for before writing back.
        file_put_contents($argv[3] . '.starting', '1');
        session_start();
        $seen = $_SESSION['counter'] ?? 0;
        file_put_contents($argv[3], (string)$seen);
        if (isset($argv[4]) && $argv[4] !== '') { wait_for_file($argv[4]); }
        $_SESSION['counter'] = $seen + 1;
        session_write_close();
        echo $seen + 1;
        break;
    default:
        fwrite(STDERR, "unknown mode $mode\n");
        exit(2);
}
