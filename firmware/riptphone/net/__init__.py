"""The only network code of the phone: HTTP/3 client, RIPT resources, push, OAuth."""
