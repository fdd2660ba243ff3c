-- Narrows products.stock back to INT UNSIGNED and products.version back to
-- INT. Values those columns cannot hold are lost: a stock above 4 294 967 295
-- is cut down to 4 294 967 295 (the units above it are gone), and a version
-- above 2 147 483 647 is cut down to 2 147 483 647, where the previous
-- release fails every order and write of the product (the next version does
-- not fit), as it did before this migration. Both statements can run twice.
UPDATE products
SET stock = LEAST(stock, 4294967295), version = LEAST(version, 2147483647)
WHERE stock > 4294967295 OR version > 2147483647;

ALTER TABLE products
    MODIFY COLUMN stock   INT UNSIGNED NOT NULL DEFAULT 0,
    MODIFY COLUMN version INT          NOT NULL DEFAULT 1;
